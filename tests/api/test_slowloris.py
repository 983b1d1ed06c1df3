"""Slowloris (issue 14 item 16): requests whose headers never finish must not hold connections open.
A real ``lorong api`` process, 100 real sockets that send a request line and then one header byte
every 0.5 s (so no idle timer fires), and one honest client that must still be answered."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lorong.storage import stack
from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration

SOCKETS = 100
HEADER_TIMEOUT_S = 2


def _closed_by_server(s: socket.socket) -> bool:
    """True when the server has closed ``s`` (EOF or reset); False while it is still open."""
    try:
        s.recv(4096)  # b"" (EOF), or a 408 answer that the close follows
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_sent_headers_are_cut_off(db_url: str, influx: InfluxClient, tmp_path: Path) -> None:
    port = stack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": db_url, "LORONG_INFLUX__URL": influx.url,
            "LORONG_INFLUX__DATABASE": influx.database, "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_API__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    api = subprocess.Popen([sys.executable, "-m", "lorong.cli", "api", "--port", str(port)], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    try:
        stack.wait_for_port(port, 30)
        for i in range(SOCKETS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
            s.setblocking(False)
            socks.append(s)
        started = time.monotonic()
        open_at_deadline: list[int] = []
        while time.monotonic() - started < HEADER_TIMEOUT_S + 3:
            time.sleep(0.5)
            for s in socks:
                if s.fileno() != -1 and not _closed_by_server(s):
                    with contextlib.suppress(OSError):
                        s.send(b"a")  # one more header byte: the connection is never idle
        for i, s in enumerate(socks):
            if not _closed_by_server(s):
                open_at_deadline.append(i)
        assert open_at_deadline == [], f"{len(open_at_deadline)} of {SOCKETS} half-sent requests still open"
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code in (200, 503)
        # a client that finishes its headers in time is answered as usual over a kept-alive connection
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            assert c.get("/health").status_code in (200, 503)
            time.sleep(0.5)
            assert c.get("/health").status_code in (200, 503)
    finally:
        for s in socks:
            s.close()
        api.send_signal(signal.SIGINT)
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait(timeout=5)
