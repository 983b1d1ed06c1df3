"""A token revoked from the CLI stops working at once (issue 14 item 20): ``lorong api token revoke``
says "at once", and the API served by ``lorong api`` kept accepting the token for 10-12 s (a cache)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_token, revoke_token
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import ApiTokenRow
from tests.api.conftest import bearer, serve
from tests.api.seed import fleet

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


PUBLIC = {"/health", "/metrics", "/", "/sw.js"}
"""Paths served without a token (``/health`` takes one only for details)."""

PATH_VALUES = {"device_id": "MKS-BIN-0001", "alert_id": "1", "token_id": "1"}
"""A value for every path parameter of the API."""


def test_revoked_token_is_refused_on_every_path(settings: Settings, sessions: sessionmaker[Session],
                                                tokens: dict[str, str]) -> None:
    """Every operation of the OpenAPI document that takes a token refuses a revoked one from the next
    request on, with the caches ``lorong api`` runs with (bins snapshot 15 s, alerts 2 s, pages 1 s):
    a page or snapshot served from memory must not outlive the token that read it."""
    now = utcnow()
    fleet(sessions, now)
    srv = serve(settings, bins_ttl_s=15.0, alerts_ttl_s=2.0, page_ttl_s=1.0)
    ops: list[tuple[str, str, dict[str, str]]] = []
    try:
        with httpx.Client(base_url=srv.url, timeout=10, headers=bearer(tokens["admin"])) as c:
            spec = c.get("/openapi.json").json()
            for path, item in spec["paths"].items():
                if path in PUBLIC:
                    continue
                url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
                for method, op in item.items():
                    params = {p["name"]: "2026-12-01T00:00:00+00:00" for p in op.get("parameters", [])
                              if p["in"] == "query" and p.get("required")}
                    ops.append((method.upper(), url, params))
            assert len(ops) >= 25, ops  # the whole API, not a handful of paths
            for method, url, params in ops:  # warm every snapshot and page cache with the token
                if method == "GET":
                    assert c.get(url, params=params).status_code < 500, url
            with sessions.begin() as s:
                row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.name == "ADMIN"))
                assert row is not None
                revoke_token(s, row.id)
            for method, url, params in ops:
                r = c.request(method, url, params=params, json={} if method in ("POST", "PATCH") else None)
                assert r.status_code == 401, (method, url, r.status_code, r.text)
                assert "revoked" in r.json()["detail"], (method, url, r.text)
            r = c.get("/health")
            assert r.status_code == 401 and "revoked" in r.json()["detail"], r.text
    finally:
        srv.stop()
