"""``bench/decisions.py`` stopped with SIGTERM or Ctrl-C stops the influxd it started.

Tried as a new user: a SIGTERM left its influxd running, orphaned (parent 1), with its
``/tmp/lorong-decisions-*`` folder; Ctrl-C cleaned up but printed a Python traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import kill_if_running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _influxd_under(tmp: Path) -> list[int]:
    """PIDs of influxd processes whose config is under ``tmp``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "influxd" in line and str(tmp) in line]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_bench_stops_its_influxd(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "decisions.py"), "small", "--days", "2",
                             "--check-every", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _influxd_under(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _influxd_under(tmp_path), "the bench did not start its influxd"
        time.sleep(2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_if_running(proc)
    left = _influxd_under(tmp_path)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "its influxd outlived the bench"
    assert "Traceback" not in err, err[-2000:]
    assert proc.returncode == 128 + sig and err.rstrip().endswith("stopped: influxd stopped")
    assert not list(tmp_path.glob("lorong-decisions-*"))
