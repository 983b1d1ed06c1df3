"""A SQLite database write-locked by another process (issue 14 item 8): reads answer at once, and
``/health`` says the database is locked. The lock is a real second connection holding
``BEGIN IMMEDIATE`` (what a long migration or a backup does), on the file the served API uses."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.auth import create_token
from lorong.core.model import utcnow
from lorong.storage.tables import ApiTokenRow
from tests.api.conftest import Served
from tests.api.seed import fleet

pytestmark = pytest.mark.integration


@contextmanager
def write_locked(db_url: str) -> Iterator[None]:
    """Hold the SQLite write lock of ``db_url`` (``BEGIN IMMEDIATE``) until the block ends."""
    conn = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_reads_do_not_wait_for_a_write_lock(served: Served, db_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        _, token = create_token(s, "Budi", "crew")  # never used: its first request is due a last_used_at write
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.url, timeout=8) as c, write_locked(db_url):
        started = time.monotonic()
        r = c.get("/alerts?status=any", headers=headers)
        assert r.status_code == 200, r.text
        assert c.get("/bins", headers=headers).status_code == 200
        assert time.monotonic() - started < 3.0
    with sessions() as s:
        row = s.query(ApiTokenRow).filter_by(name="Budi").one()
        assert row.last_used_at is None  # skipped while locked, not waited for
    with httpx.Client(base_url=served.url, timeout=8) as c:
        assert c.get("/alerts", headers=headers).status_code == 200
    with sessions() as s:
        assert s.query(ApiTokenRow).filter_by(name="Budi").one().last_used_at is not None  # written once free


def test_health_says_the_database_is_locked(served: Served, db_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        _, token = create_token(s, "ops", "officer")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.url, timeout=8) as c:
        with write_locked(db_url):
            started = time.monotonic()
            r = c.get("/health", headers=headers)
            assert time.monotonic() - started < 3.0
            body = r.json()
            assert r.status_code == 503 and body["status"] == "degraded"
            assert body["database"]["ok"] is False and "locked" in body["database"]["detail"], body
        r = c.get("/health", headers=headers)
        assert r.json()["database"]["ok"] is True, r.json()


def test_every_read_answers_under_a_write_lock(served: Served, db_url: str, sessions: sessionmaker[Session],
                                               tokens: dict[str, str]) -> None:
    """Every GET of the OpenAPI document answers while another process holds the write lock: no read
    path may need a write (a token's first use, a snapshot refresh, a page of routes)."""
    fleet(sessions, utcnow())
    with sessions.begin() as s:
        _, token = create_token(s, "Sari", "admin")  # first use: a last_used_at write is due on every path
    headers = {"Authorization": f"Bearer {token}"}
    values = {"device_id": "MKS-BIN-0001", "alert_id": "1", "token_id": "1"}
    times = {"from": "2026-12-01T00:00:00+00:00", "to": "2026-12-02T00:00:00+00:00"}  # /export/readings
    with httpx.Client(base_url=served.url, timeout=8, headers=headers) as c:
        spec = c.get("/openapi.json").json()
        gets = [(re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path).replace("air/stations/MKS-BIN-0001",
                                                                                    "air/stations/MKS-AIR-01"),
                 {p["name"]: times[p["name"]] for p in item["get"].get("parameters", [])
                  if p["in"] == "query" and p.get("required")})
                for path, item in spec["paths"].items() if "get" in item]
        assert len(gets) >= 15, gets
        with write_locked(db_url):
            for url, params in gets:
                started = time.monotonic()
                r = c.get(url, params=params)
                took = time.monotonic() - started
                assert r.status_code in (200, 503) and took < 3.0, (url, r.status_code, round(took, 2), r.text[:200])
                assert r.status_code == 200 or url == "/health", (url, r.text[:200])
