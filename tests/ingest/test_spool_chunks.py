"""The spool's chunked layout (one row per append): a random mix of appends, partial and single
removals and reopenings matches a plain list; a spool file of the one-row-per-line layout is
converted on open; a failed removal leaves ``synchronous=FULL`` in force for the next append."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from lorong.storage.spool import Spool


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_match_a_list(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "s.sqlite"
    spool, expected, k = Spool(path), [], 0
    for _ in range(250):
        full = spool.peek(10**9)
        assert [x for _, x in full] == expected
        assert spool.depth() == len(expected)
        assert [i for i, _ in full] == sorted({i for i, _ in full})
        op = rng.random()
        if op < 0.4:
            lines = [f"m v={k + i} {k + i}" for i in range(rng.randint(0, 30))]
            k += len(lines)
            spool.append(lines)
            expected += lines
        elif op < 0.7 and full:
            last = full[rng.randrange(len(full))][0]
            keep = [x for i, x in full if i > last]
            assert spool.remove_through(last) == len(expected) - len(keep)
            expected = keep
        elif op < 0.85 and full:
            ids = rng.sample([i for i, _ in full], min(len(full), rng.randint(1, 5)))
            keep = [x for i, x in full if i not in ids]
            assert spool.remove([*ids, ids[0], 7]) == len(expected) - len(keep)
            expected = keep
        else:
            spool.close()
            spool = Spool(path)
    assert [x for _, x in spool.peek(len(expected) + 1)] == expected
    spool.close()


def test_one_row_per_line_layout_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)")
    db.executemany("INSERT INTO spool (line) VALUES (?)", [(f"m v={i} {i}",) for i in range(25_000)])
    db.commit()
    db.close()
    spool = Spool(path)
    assert spool.depth() == 25_000
    assert [x for _, x in spool.peek(25_001)] == [f"m v={i} {i}" for i in range(25_000)]
    spool.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*) FROM sqlite_master WHERE name = 'spool'").fetchone() == (0,)
    assert check.execute("SELECT max(n) FROM chunks").fetchone()[0] <= 10_000  # no huge rows to split
    check.close()


def test_lines_are_checked_and_removal_failure_keeps_full_sync(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="newline"):
        spool.append(["a 1", "b 2\nc 3"])
    assert spool.depth() == 0
    spool.append(["a 1", "b 2"])
    db = spool._db
    assert db is not None
    db.execute("CREATE TRIGGER no_delete BEFORE DELETE ON chunks BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        spool.remove_through(spool.peek(2)[-1][0])
    assert spool.depth() == 2
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert not db.in_transaction
    db.execute("DROP TRIGGER no_delete")
    assert spool.remove_through(spool.peek(2)[-1][0]) == 2
    spool.close()
