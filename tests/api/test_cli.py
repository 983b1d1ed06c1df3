"""``lorong api`` as a user starts it: a real process that says where it serves."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.runtime import database_location

pytestmark = pytest.mark.integration


def _output_until(proc: subprocess.Popen[bytes], needle: str, timeout_s: float) -> str:
    """``proc``'s stdout up to and including ``needle`` (or all of it after ``timeout_s``)."""
    assert proc.stdout is not None
    out = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and needle.encode() not in out:
        if sel.select(timeout=0.2):
            chunk = os.read(proc.stdout.fileno(), 4096)  # unbuffered: select() sees what is left
            if not chunk:
                break
            out += chunk
    return out.decode()


def test_serve_prints_where(db_url: str, influx: InfluxClient, tmp_path: Path) -> None:
    port = stack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": db_url, "LORONG_INFLUX__URL": influx.url,
            "LORONG_INFLUX__DATABASE": influx.database, "LORONG_VAR_DIR": str(tmp_path / "var"),
            "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lorong.cli", "api", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = _output_until(proc, "Ctrl-C", 30)
        url = f"http://127.0.0.1:{port}"
        assert f"Lorong API serving on {url}" in out, out
        assert f"crew page: {url}/" in out and f"API docs:  {url}/docs" in out and "Ctrl-C" in out
        # issue 14 item 11: a token made on another database is a 401 here; the banner says which one this is
        assert f"database:  {database_location(db_url)}" in out, out
        assert httpx.get(f"{url}/health", timeout=5).status_code in (200, 503)  # it says so once it listens
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
