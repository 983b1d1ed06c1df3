"""The on-disk spool: order, removal, depth, atomic appends, durability across SIGKILL, one owner."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorong.storage.spool import Spool, SpoolBusy


def test_fifo_peek_remove_and_depth(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s" / "a.sqlite")
    spool.append([f"m v={i} {i}" for i in range(10)])
    spool.append([])
    assert spool.depth() == 10
    first = spool.peek(4)
    assert [x for _, x in first] == ["m v=0 0", "m v=1 1", "m v=2 2", "m v=3 3"]
    assert [i for i, _ in first] == sorted(i for i, _ in first)
    assert spool.remove_through(first[-1][0]) == 4
    assert spool.depth() == 6
    rest = spool.peek(100)
    assert [x for _, x in rest] == [f"m v={i} {i}" for i in range(4, 10)]
    assert spool.remove([rest[0][0], rest[0][0], 999_999]) == 1
    assert spool.depth() == 5
    spool.close()
    spool.close()  # idempotent
    again = Spool(tmp_path / "s" / "a.sqlite")
    assert again.depth() == 5  # counted again at open
    assert [x for _, x in again.peek(1)] == ["m v=5 5"]
    again.close()


def test_append_is_all_or_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a.sqlite")
    spool.append(["ok 1"])
    with pytest.raises(sqlite3.IntegrityError):
        spool.append(["ok 2", None])  # type: ignore[list-item]  # NOT NULL fails on the second row
    assert spool.depth() == 1
    assert [x for _, x in spool.peek(10)] == ["ok 1"]
    spool.append(["ok 3"])  # the connection is usable after the rollback
    assert [x for _, x in spool.peek(10)] == ["ok 1", "ok 3"]
    spool.close()


def test_one_process_per_spool(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    spool = Spool(path)
    with pytest.raises(SpoolBusy, match="in use"):
        Spool(path)
    spool.close()
    Spool(path).close()  # free again once closed


def test_appended_points_survive_sigkill(tmp_path: Path) -> None:
    """A child appends batches of 100 and reports each; it is killed with SIGKILL mid-stream. Every
    reported batch is there, no batch is there in part, and the kernel released the child's lock."""
    path = tmp_path / "k.sqlite"
    child = textwrap.dedent(f"""
        from pathlib import Path
        from lorong.storage.spool import Spool
        s = Spool(Path({str(path)!r}))
        for batch in range(100_000):
            s.append([f"m b={{batch}}i,n={{i}}i {{batch * 100 + i}}" for i in range(100)])
            print(batch, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    reported = -1
    try:
        while reported < 30:
            out = proc.stdout.readline()
            assert out, "child died"
            reported = int(out)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    spool = Spool(path)
    depth = spool.depth()
    assert depth >= (reported + 1) * 100
    assert depth % 100 == 0
    lines = [x for _, x in spool.peek(depth)]
    assert lines == [f"m b={b}i,n={i}i {b * 100 + i}" for b in range(depth // 100) for i in range(100)]
    spool.close()
