"""Issue 14 item 3: a full spool disk. Nothing was lost, but after InfluxDB came back the ingester stayed
stuck: it wrote the first batch again and again and could not delete it (SQLite needs free space to
delete in WAL mode), and its log blamed InfluxDB. Reproduced on a real full filesystem (a 2 MB tmpfs in
a private mount namespace, ``unshare``) against the real InfluxDB."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("spool_full_run.py")
ROOT = Path(__file__).resolve().parents[2]


def test_full_spool_disk_keeps_draining_and_names_the_disk(tmp_path: Path, influx: InfluxClient) -> None:
    unshare = shutil.which("unshare") or pytest.fail("unshare (util-linux) not installed")
    mnt = tmp_path / "spool"
    mnt.mkdir()
    # root may mount in a new mount namespace; anyone else through a user namespace (-r)
    proc = subprocess.run([unshare, "-rm", "sh", "-c", f'mount -t tmpfs -o size=2m tmpfs "{mnt}" && exec '
                           f'"{sys.executable}" "{SCRIPT}" "{mnt}" "{influx.url}" "{influx.database}"'],
                          capture_output=True, text=True, timeout=90, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert "database or disk is full" in got["error"], got  # the disk filled: the spool refused the rest
    assert got["appended"] > 5000, got
    assert got["free_full"] < 64 * 1024, got
    [metric] = got["free_metric"]
    assert float(metric.split()[-1]) == got["free_full"], got
    # InfluxDB is up: everything spooled reaches it (the writer went on past what it could not delete),
    # the released reserve let the spool delete what it could and take new points again; the rest is
    # deleted once the disk has room (a disk this small holds the whole spool in its -wal file, which
    # SQLite cannot checkpoint into a main file that cannot grow)
    assert got["stored"] == got["appended"], got
    assert got["depth"] < got["appended"], got
    assert got["after"] == "ok", got
    assert got["influx_up"] is True, got
    log = proc.stderr
    assert "disk is full" in log and str(mnt) in log, log[-3000:]
    assert "InfluxDB writes failing" not in log, log[-3000:]
