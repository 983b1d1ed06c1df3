"""A damaged spool never starts silently empty (issue 14, items 1 and 2).

Each case writes 1,000 points into a real SQLite spool the way the ingester does (20 appends of
50), simulates a crash (the files are copied while the spool is open, so nothing is
checkpointed or closed cleanly), damages the copy the way an operator or a full disk would, and
opens it again: the spool must refuse with :class:`SpoolDamaged`, whose one-line message names
the file and what to do. ``lorong ingest run`` on such a file prints exactly one ``error:`` line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lorong.storage.db import migrate
from lorong.storage.spool import Spool, SpoolDamaged

POINTS = 1000


def crashed_copy(tmp_path: Path, checkpoint_half: bool = True) -> Path:
    """A spool with 1,000 points, copied as a crash would leave it (WAL not checkpointed)."""
    src = tmp_path / "live" / "ing.sqlite"
    spool = Spool(src)
    db = spool._conn()
    db.execute("PRAGMA wal_autocheckpoint=0")  # keep the second half in the WAL, as under load
    for batch in range(20):
        spool.append([f"m v={batch * 50 + i}i {batch * 50 + i}" for i in range(50)])
        if checkpoint_half and batch == 9:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert spool.depth() == POINTS
    dst = tmp_path / "crashed" / "ing.sqlite"
    dst.parent.mkdir()
    for suffix in ("", "-wal", "-shm", ".count"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", f"{dst}{suffix}")
    spool.close()
    return dst


def test_a_crashed_copy_opens_whole(tmp_path: Path) -> None:
    """The undamaged crashed copy is the baseline: all 1,000 points come back."""
    spool = Spool(crashed_copy(tmp_path))
    assert spool.depth() == POINTS
    spool.close()


@pytest.mark.parametrize("damage", ["wal_deleted", "wal_cut", "main_truncated", "main_deleted"])
def test_lost_points_refuse_to_open(tmp_path: Path, damage: str) -> None:
    path = crashed_copy(tmp_path)
    wal = Path(f"{path}-wal")
    if damage == "wal_deleted":
        wal.unlink()
    elif damage == "wal_cut":
        os.truncate(wal, wal.stat().st_size // 2)
    elif damage == "main_truncated":
        os.truncate(path, 0)
    else:
        path.unlink()
        wal.unlink()
    with pytest.raises(SpoolDamaged) as err:
        Spool(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    assert "move" in msg and "aside" in msg  # says what to do
    Spool(tmp_path / "live" / "ing.sqlite").close()  # the lock of a refused spool is released: other files open


def test_lock_released_after_refusal(tmp_path: Path) -> None:
    path = crashed_copy(tmp_path)
    Path(f"{path}-wal").unlink()
    for _ in range(2):  # the second attempt gets SpoolDamaged again, not SpoolBusy
        with pytest.raises(SpoolDamaged):
            Spool(path)


def test_malformed_page_refuses(tmp_path: Path) -> None:
    path = crashed_copy(tmp_path, checkpoint_half=False)
    spool = Spool(path)  # checkpoint everything into the main file, then damage a page in the middle
    spool._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    spool.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)
    with pytest.raises(SpoolDamaged, match=r"integrity check|malformed"):
        Spool(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ing.sqlite"
    path.write_bytes(b"these are not the points you are looking for\n" * 100)
    with pytest.raises(SpoolDamaged, match="not a SQLite database"):
        Spool(path)


def test_an_empty_spool_after_a_clean_drain_opens(tmp_path: Path) -> None:
    """No false alarm: a spool emptied by the writer (every entry removed) and reopened is fine,
    as is a spool of the earlier release, which has no count file yet."""
    path = tmp_path / "ing.sqlite"
    spool = Spool(path)
    spool.append(["m v=1i 1", "m v=2i 2"])
    spool.remove_through(spool.peek(10)[-1][0])
    spool.close()
    assert Spool(path).depth() == 0
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)")
    db.execute("INSERT INTO spool (line) VALUES ('m v=3i 3')")
    db.commit()
    db.close()
    spool = Spool(old)
    assert [x for _, x in spool.peek(5)] == ["m v=3i 3"]
    spool.close()


def test_ingest_run_prints_one_error_line(tmp_path: Path) -> None:
    """``lorong ingest run`` on a spool that is not a database: one ``error:`` line naming the
    file, exit status 2 (a setup error), no traceback."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    bad = spool_dir / "lorong-ingest.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    migrate(f"sqlite:///{tmp_path / 'lorong.db'}")  # a registry database exists (issue 14 item 11)
    env = {**os.environ, "LORONG_VAR_DIR": str(tmp_path / "var"),
           "LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}",
           "LORONG_INGEST__SPOOL_DIR": str(spool_dir), "LORONG_MQTT__CLIENT_ID": "lorong-ingest",
           "LORONG_MQTT__PORT": "1", "LORONG_INFLUX__URL": "http://127.0.0.1:1"}
    env.pop("LORONG_DEBUG", None)
    proc = subprocess.run([str(Path(sys.executable).with_name("lorong")), "ingest", "run"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], lines
    assert "Traceback" not in proc.stderr


def test_workers_give_up_on_a_damaged_spool(tmp_path: Path) -> None:
    """Under ``--workers 2`` a worker whose spool is not a database is started once, not every
    2.5 s forever: the supervisor stops the other worker and exits 2; one ``error:`` line."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    bad = spool_dir / "lorong-ingest-1.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    migrate(f"sqlite:///{tmp_path / 'lorong.db'}")  # a registry database exists (issue 14 item 11)
    env = {**os.environ, "LORONG_VAR_DIR": str(tmp_path / "var"),
           "LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}",
           "LORONG_INGEST__SPOOL_DIR": str(spool_dir), "LORONG_MQTT__CLIENT_ID": "lorong-ingest",
           "LORONG_MQTT__PORT": "1", "LORONG_INFLUX__URL": "http://127.0.0.1:1", "LORONG_INGEST__METRICS_PORT": "0"}
    env.pop("LORONG_DEBUG", None)
    # a bound, not a speed: restarts every 2.5 s would never end (60 s: a worker took 15 s to start at load 13)
    try:
        proc = subprocess.run([str(Path(sys.executable).with_name("lorong")), "ingest", "run", "--workers", "2"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else str(exc.stderr)
        pytest.fail(f"the supervisor kept restarting the worker: {out[-1500:]}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.count("worker 1 started") == 1, out
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], out
