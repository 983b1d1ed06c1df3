"""A token revoked from the CLI stops working at once (issue 14 item 20): ``lorong api token revoke``
says "at once", and the API served by ``lorong api`` kept accepting the token for 10-12 s (a cache)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_token
from lorong.storage import stack
from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration


def test_token_revoked_from_the_cli_is_refused_at_once(db_url: str, sessions: sessionmaker[Session],
                                                       influx: InfluxClient, tmp_path: Path) -> None:
    with sessions.begin() as s:
        row, token = create_token(s, "Budi", "crew")
        token_id = row.id
    port = stack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")}
    env |= {"LORONG_DATABASE_URL": db_url, "LORONG_INFLUX__URL": influx.url,
            "LORONG_INFLUX__DATABASE": influx.database, "LORONG_VAR_DIR": str(tmp_path / "var")}
    api = subprocess.Popen([sys.executable, "-m", "lorong.cli", "api", "--port", str(port)], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stack.wait_for_port(port, 30)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(3):
                assert c.get("/alerts").status_code == 200
            revoke = subprocess.run([sys.executable, "-m", "lorong.cli", "api", "token", "revoke", str(token_id)],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert revoke.returncode == 0, revoke.stderr
            assert "revoked" in revoke.stdout
            revoked_at = time.monotonic()
            r = c.get("/alerts")
            assert r.status_code == 401, f"still accepted {time.monotonic() - revoked_at:.2f} s after revoke"
            assert "revoked" in r.json()["detail"]
    finally:
        api.send_signal(signal.SIGINT)
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait(timeout=5)
