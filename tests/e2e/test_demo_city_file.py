"""``lorong demo --city FILE`` runs the city the file describes, on real services (the stack the demo
starts itself on free loopback ports)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorong.storage import stack
from lorong.storage.db import make_engine, session_factory
from lorong.storage.tables import DeviceRow
from tests.support import kill_if_running

pytestmark = pytest.mark.integration


def test_a_city_file_smaller_than_the_demo_default_keeps_its_size(tmp_path: Path) -> None:
    """A city file of 3 bins and 1 air station ran 40 bins and 5 stations: the demo's default cut
    (the first 40 bins of Makassar's 200) was taken as a size, so a user's small town got 45 devices
    it never described. The default is now "at most 40 and 5"; ``--bins``/``--air`` still set a size."""
    (tmp_path / "tiny.yaml").write_text("name: Tiny\ntimezone: Asia/Jakarta\nbins: 3\nstations: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}", "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_MQTT__PORT": str(stack.free_port()), "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}",
            "LORONG_API__PORT": str(stack.free_port())}
    proc = subprocess.run([sys.executable, "-m", "lorong.cli", "--log-level", "WARNING", "demo", "--city", "tiny.yaml",
                           "--history-days", "0", "--duration", "2"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Tiny: 3 bins, 1 air station, seed " in proc.stdout, proc.stdout
    with session_factory(make_engine(env["LORONG_DATABASE_URL"]))() as s:
        kinds = sorted(d.kind for d in s.query(DeviceRow).filter(DeviceRow.city_id == "tiny"))
    assert kinds == ["air", "bin", "bin", "bin"]


def test_two_quick_ctrl_c_stop_the_demo_without_a_traceback(tmp_path: Path) -> None:
    """Tried as a new user: two Ctrl-C in quick succession (a double tap, or ``timeout -s INT`` and
    then the shell's) printed about 40 lines of uvicorn traceback (KeyboardInterrupt,
    CancelledError) before ``stopped.``; one Ctrl-C was clean. The second now waits for the first."""
    import signal
    import time

    (tmp_path / "tiny.yaml").write_text("name: Tiny\ntimezone: Asia/Jakarta\nbins: 3\nstations: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    api = stack.free_port()
    env |= {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}", "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_MQTT__PORT": str(stack.free_port()), "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}",
            "LORONG_API__PORT": str(api)}
    proc = subprocess.Popen([sys.executable, "-m", "lorong.cli", "demo", "--city", "tiny.yaml", "--history-days", "0",
                             "--duration", "100"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        stack.wait_for_port(api, 90)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        kill_if_running(proc)
    assert "Traceback" not in out and "CancelledError" not in out, out[-3000:]
    assert out.rstrip().endswith("stopped."), out[-1000:]
