"""A second ``lorong demo`` in the same folder fails at once, before starting or loading anything,
with one ``error:`` line naming what to do (it loaded the city's past for minutes, then failed on
the spool the first demo holds). The "first demo" is this test holding the same spool file, as the
first demo's ingester does (a real :class:`lorong.storage.spool.Spool` and its lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lorong.storage import stack
from lorong.storage.spool import Spool


def test_a_second_demo_fails_fast_on_the_busy_spool(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}", "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_MQTT__PORT": str(stack.free_port()),
            "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}",
            "LORONG_API__PORT": str(stack.free_port())}
    spool = Spool(tmp_path / "var" / "spool" / "lorong-ingest.sqlite")  # the default spool_dir and client id
    try:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "lorong.cli", "demo", "--bins", "2", "--air", "0",
                               "--history-days", "2", "--duration", "5"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        took = time.monotonic() - t0
    finally:
        spool.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: another `lorong demo`"), lines
    assert "LORONG_MQTT__CLIENT_ID" in lines[0] and "lorong-ingest.sqlite" in lines[0]
    assert took < 15, f"{took:.1f} s"
    assert not (tmp_path / "var" / "run").exists()  # no broker or influxd started
    assert not (tmp_path / "lorong.db").exists()  # no database made


def test_a_demo_on_an_api_port_in_use_says_so_on_stderr(tmp_path: Path) -> None:
    """The demo's setup errors went to stdout: ``lorong demo > demo.log`` showed nothing and exited 1.
    Like every other command's, its one ``error:`` line is on stderr, and nothing starts."""
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env |= {"LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}", "LORONG_VAR_DIR": str(tmp_path / "var"),
                "LORONG_MQTT__PORT": str(stack.free_port()),
                "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}", "LORONG_API__PORT": str(port)}
        proc = subprocess.run([sys.executable, "-m", "lorong.cli", "demo", "--bins", "2", "--air", "0",
                               "--duration", "5"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: http://127.0.0.1:{port} is already in use (another `lorong demo` or `lorong api`?); "
        "stop it or set LORONG_API__PORT"]
    assert not (tmp_path / "var" / "run").exists()
