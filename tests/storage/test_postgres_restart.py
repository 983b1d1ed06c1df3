"""The API, the analytics job and an ingester across a PostgreSQL restart (issue 15, "Past one machine").

A failover of a replicated PostgreSQL (Patroni promoting a standby, README "PostgreSQL replicated")
looks to Lorong like its server going away and coming back: established connections break, new
ones are refused for a while. Here a real PostgreSQL 15 of our own (own data dir, free loopback
port) is restarted twice under the real parts:

1. ``pg_ctl restart`` while nothing runs: the connections idle in every pool are now dead, and the
   first request, job run and registry reload after it must still succeed (``pool_pre_ping``).
2. ``pg_ctl stop``, a few seconds of outage under load, ``pg_ctl start``: the API answers 503 with a
   message (never 500) while it is down and 200 after; a job run during the outage fails with
   :class:`lorong.core.errors.DatabaseUnavailable` and commits nothing, the next run after it opens the
   alerts of readings that arrived during the outage; the ingester spools and acknowledges its
   readings, keeps the rejected uplinks unacknowledged until their dead letters can be committed,
   and nothing it acknowledged is lost.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import run_cities, run_once
from api.auth import create_token
from devices.registry import DeviceIn, RegistryLookup, add_device
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.service import Ingester
from lorong.core.errors import DatabaseUnavailable
from lorong.core.settings import AnalyticsSettings
from lorong.storage import stack
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow
from tests.api.conftest import serve
from tests.devices.conftest import PG_BIN, _as_postgres
from tests.ingest.test_delivery_support import (
    assert_stored_exactly,
    count_stored,
    register_fleet,
    settings_for,
    uplinks,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration

BINS = ("PGB-1", "PGB-2", "PGB-3")


class Postgres:
    """A PostgreSQL server of this module's own on 127.0.0.1:``port`` (trust auth, user ``postgres``)."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.fail(f"PostgreSQL is not installed in {PG_BIN}: run `make test` (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="lorong-pg-restart-"))
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)
        self.data, self.port = self.root / "data", stack.free_port()
        self._run = _as_postgres()
        subprocess.run([*self._run, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        """``pg_ctl <args>`` on this server, waiting for it (bounded)."""
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                "-c fsync=off -c full_page_writes=off")
        subprocess.run([*self._run, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
                        "-o", opts, "-w", "-t", "60", *args], check=True, capture_output=True, timeout=90)

    def close(self) -> None:
        """Stop the server and remove its files."""
        subprocess.run([*self._run, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """This module's own PostgreSQL (restarting it must not disturb other tests' server)."""
    pg = Postgres()
    pg.ctl("start")
    try:
        yield pg
    finally:
        pg.close()


def bin_uplink(device: str, ts: datetime, distance_mm: float) -> tuple[str, bytes]:
    """A native uplink of a bin: one ultrasonic distance (the ingester derives ``fillingLevel``)."""
    body = {"device_id": device, "time": ts.isoformat(timespec="milliseconds"),
            "metrics": {"distance": {"value": distance_mm, "unit": "mm"}}}
    return f"lorong/v1/{device}/up", json.dumps(body).encode()


@dataclass
class Loop:
    """Calls ``step`` every ``every_s`` on its own thread until stopped (bounded: at most
    ``max_steps``), recording ``(monotonic time the call ended, outcome)`` per call: a call still in
    flight when PostgreSQL stops counts as during the outage."""

    step: Any
    every_s: float
    max_steps: int = 2000
    seen: list[tuple[float, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(self.max_steps):
            if self._stop.is_set():
                return
            outcome = self.step()
            self.seen.append((time.monotonic(), outcome))
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        """Stop after the current call."""
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def test_api_job_and_ingester_ride_out_a_postgres_restart(postgres: Postgres, influx: InfluxClient,
                                                          mosquitto: stack.Service, tmp_path: Path) -> None:
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('CREATE DATABASE "lorong_restart"'))
    admin.dispose()
    db_url = postgres.url.rsplit("/", 1)[0] + "/lorong_restart"
    migrate(db_url)
    check: sessionmaker[Session] = session_factory(make_engine(db_url))
    register_fleet(check)
    with check.begin() as s:
        for b in BINS:
            add_device(s, DeviceIn(id=b, kind="bin", kecamatan="Wajo", depth_mm=1000, blind_zone_mm=150,
                                   installed_at=datetime.now(UTC) - timedelta(days=30)))
        token = create_token(s, "OPS", "admin")[1]

    settings = settings_for(tmp_path, db_url, mosquitto.port, influx, "pg-restart-ingest")
    api = serve(settings)
    http = httpx.Client(base_url=api.url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    job_sessions = session_factory(make_engine(db_url))
    cfg = AnalyticsSettings()
    ing = Ingester(settings, RegistryLookup(session_factory(make_engine(db_url)), refresh_s=0.5),
                   DeadLetterStore(session_factory(make_engine(db_url))), InfluxClient(influx.url, influx.database))
    ing.start()
    assert ing.source.subscribed.wait(15)
    pub = Publisher("127.0.0.1", mosquitto.port, client_id="pg-restart-pub")
    loops: list[Loop] = []
    try:
        # 1. a restart while every pool holds connections: the first use after it must work
        assert http.get("/devices").status_code == 200
        run_once(job_sessions, influx, cfg)
        good = uplinks(40)
        pub.publish_many([(u.topic, u.payload) for u in good[:20]])
        wait_for(lambda: count_stored(influx) == 20, 20, "first readings stored")
        postgres.ctl("-m", "fast", "restart")
        time.sleep(0.6)  # past the lookup's refresh: the next uplink reloads the registry
        pub.publish_many([(u.topic, u.payload) for u in good[20:]])
        first = http.get("/devices")
        assert first.status_code == 200, first.text
        assert {d["id"] for d in first.json()} >= set(BINS)
        assert run_once(job_sessions, influx, cfg) is not None
        wait_for(lambda: count_stored(influx) == 40, 20, "readings after the restart stored")

        # 2. an outage under load
        def api_step() -> tuple[int, str]:
            try:
                r = http.get("/alerts")
                if r.status_code == 200:
                    return 200, ""
                return r.status_code, f"{r.json().get('detail', '')} Retry-After={r.headers.get('Retry-After')}"
            except httpx.HTTPError as exc:
                return 0, repr(exc)

        def job_step() -> str:
            try:
                run_once(job_sessions, influx, cfg)
                return "ok"
            except DatabaseUnavailable:
                return "unavailable"
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"

        loops = [Loop(api_step, 0.05), Loop(job_step, 0.3)]
        time.sleep(1.0)
        down_at = time.monotonic()
        postgres.ctl("-m", "fast", "stop")
        more = uplinks(100, start=40)
        now = datetime.now(UTC)
        full = [bin_uplink(b, now - timedelta(minutes=k), 200.0) for b in BINS for k in (2, 1)]  # 0.94 full
        unknown = [(u.topic, u.payload) for u in uplinks(5, start=500, devices=("NOPE-1",))]
        pub.publish_many([(u.topic, u.payload) for u in more] + full + unknown, timeout_s=30)
        time.sleep(0.5)
        wait_for(lambda: any(s[1][0] == 503 for s in loops[0].seen if s[0] > down_at), 10,
                 "a 503 from the API")
        wait_for(lambda: any(s[1] != "ok" for s in loops[1].seen if s[0] > down_at), 10, "a failed job run")
        with pytest.raises(DatabaseUnavailable):
            run_once(job_sessions, influx, cfg)
        with pytest.raises(DatabaseUnavailable):  # the scheduler's tick: every city's run, one error
            run_cities(job_sessions, influx, cfg)
        assert ing._acks, "the rejected uplinks must stay unacknowledged while their dead letters cannot be stored"
        up_at = time.monotonic()
        postgres.ctl("start")
        wait_for(lambda: any(s[1][0] == 200 for s in loops[0].seen if s[0] > up_at), 15, "a 200 after the restart")
        wait_for(lambda: any(s[1] == "ok" for s in loops[1].seen if s[0] > up_at), 15, "a job run after the restart")
        time.sleep(1.0)
    finally:
        for loop in loops:
            loop.stop()
        pub.close()
        ing.stop()
        api.stop()
        http.close()

    api_seen, job_seen = loops[0].seen, loops[1].seen
    assert all(code == 200 for t, (code, _d) in api_seen if t < down_at), "before the outage"
    during = [(code, detail) for t, (code, detail) in api_seen if down_at < t < up_at]
    assert {code for code, _d in during} <= {200, 503}, during  # 200: a request that finished before the stop
    assert any(code == 503 for code, _d in during)
    assert all(d == "the database is not answering (restarting or failing over); try again in a minute "
               "Retry-After=60" for code, d in during if code == 503), during
    back = next(t for t, (code, _d) in api_seen if t > up_at and code == 200)
    assert all(code == 200 for t, (code, _d) in api_seen if t >= back), "every request after the first 200"
    assert {o for t, o in job_seen if down_at < t < up_at} <= {"ok", "unavailable"}, job_seen
    first_ok = next(t for t, o in job_seen if t > up_at and o == "ok")
    assert all(o == "ok" for t, o in job_seen if t >= first_ok)

    with check() as s:  # the readings that came during the outage opened their alerts after it
        opened = s.scalars(select(AlertRow.device_id).where(AlertRow.type == "bin_full",
                                                             AlertRow.status == "active")).all()
        assert sorted(opened) == list(BINS)
        assert s.scalar(select(func.count()).select_from(AlertRow).where(AlertRow.type == "bin_full")) == len(BINS)
    assert_stored_exactly(influx, good + more)  # nothing acknowledged is lost, nothing twice
    assert DeadLetterStore(check).counts_by_reason() == {"unknown_device": 5}


def test_a_multi_host_url_reaches_the_primary_past_a_dead_host(postgres: Postgres) -> None:
    """The URL the README gives for a replicated PostgreSQL without a virtual IP: libpq tries the
    hosts in turn and keeps the first that takes writes (``target_session_attrs=read-write``)."""
    dead = stack.free_port()
    url = (f"postgresql+psycopg://postgres@/postgres?host=127.0.0.1:{dead}&host=127.0.0.1:{postgres.port}"
           "&target_session_attrs=read-write&connect_timeout=5")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            port = conn.execute(text("SHOW port")).scalar()
            read_only = conn.execute(text("SHOW transaction_read_only")).scalar()
    finally:
        engine.dispose()
    assert (port, read_only) == (str(postgres.port), "off")
