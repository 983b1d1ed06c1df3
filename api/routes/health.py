"""``GET /health``: is the API fit to serve, and (with a token) which dependency is not.

Without a token the answer is only ``{"status": "ok"}`` (HTTP 200) or ``{"status": "degraded"}``
(HTTP 503), for load balancers and uptime probes: no addresses or versions for anyone who can reach
the port. With any valid token it also names each component (broker, InfluxDB, database) with a
detail. A bad token is a 401 like anywhere else.

Checks:

- database: a ``SELECT 1``; on SQLite also whether a write could start now (``BEGIN IMMEDIATE``
  with no busy wait, rolled back at once). A database write-locked by another process (a long
  migration, a backup) answers reads but would make every write wait, so it is reported as
  ``ok: false`` with ``write-locked`` in the detail.
- InfluxDB: ``/ping`` answers 204.
- broker: a TCP connection to the MQTT listener. Mosquitto logs every connection, so the result
  is kept for :data:`BROKER_PROBE_S` seconds: however often ``/health`` is called, the broker sees
  at most one probe connection in that time (its log does not grow with the probe rate).
"""

from __future__ import annotations

import socket
import threading
import time

from fastapi import APIRouter, Request, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.deps import ContextDep, MaybeReader
from api.schemas import ComponentHealth, HealthOut

router = APIRouter(tags=["health"])

BROKER_PROBE_S = 30.0
"""Seconds a broker probe result is reused (the broker logs each probe connection)."""


class BrokerProbe:
    """The last broker reachability result of one app, refreshed at most every :data:`BROKER_PROBE_S` s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: ComponentHealth | None = None
        self._at = 0.0

    def check(self, host: str, port: int, now: float | None = None) -> ComponentHealth:
        """Reachability of ``host:port`` over TCP (1 s timeout), from the last probe when it is recent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._result is not None and now - self._at < BROKER_PROBE_S:
                return self._result
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    self._result = ComponentHealth(ok=True, detail=f"{host}:{port}")
            except OSError as exc:
                self._result = ComponentHealth(ok=False, detail=f"{host}:{port}: {exc}")
            self._at = now
            return self._result


def _probe(request: Request) -> BrokerProbe:
    probe: BrokerProbe | None = getattr(request.app.state, "broker_probe", None)
    if probe is None:
        probe = request.app.state.broker_probe = BrokerProbe()
    return probe


def _sqlite_write_lock(engine: Engine) -> str | None:
    """``None`` when a write could start now on this SQLite database, else why not (never waits)."""
    with engine.connect() as conn:
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.rollback()
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            return None
        except Exception as exc:  # sqlite3.OperationalError: database is locked
            return str(exc)
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy or 0)}")


def database_health(sessions: sessionmaker[Session], scheme: str) -> ComponentHealth:
    """The database component of ``/health`` (see the module docstring); never raises."""
    try:
        with sessions() as s:
            s.execute(text("SELECT 1"))
            engine = s.get_bind()
        if scheme == "sqlite" and isinstance(engine, Engine):
            locked = _sqlite_write_lock(engine)
            if locked:
                return ComponentHealth(ok=False, detail=f"sqlite: write-locked by another process ({locked}): "
                                                        "reads answer, writes wait")
        return ComponentHealth(ok=True, detail=scheme)
    except OperationalError as exc:
        return ComponentHealth(ok=False, detail=str(exc.orig)[:200])
    except Exception as exc:  # any driver error means "not reachable"
        return ComponentHealth(ok=False, detail=str(exc)[:200])


@router.get("/health", response_model=HealthOut, response_model_exclude_none=True,
            responses={503: {"model": HealthOut, "description": "a component is down"}},
            openapi_extra={"security": [{}, {"token": []}]})  # the token is optional here (OpenAPI 3.1 4.8.30)
def health(request: Request, response: Response, ctx: ContextDep, who: MaybeReader) -> HealthOut:
    """``ok`` (200) when the broker accepts TCP, InfluxDB answers ``/ping`` and the database a query and
    a write, else ``degraded`` (503). Component details only with a token (any role)."""
    mqtt = ctx.settings.mqtt
    broker = _probe(request).check(mqtt.host, mqtt.port)
    influx = ComponentHealth(ok=ctx.influx.ping(), detail=ctx.influx.url)
    database = database_health(ctx.sessions, ctx.settings.database_url.split("://", 1)[0].split("+")[0])
    ok = broker.ok and influx.ok and database.ok
    if not ok:
        response.status_code = 503
    status = "ok" if ok else "degraded"
    if who is None:
        return HealthOut(status=status)
    return HealthOut(status=status, broker=broker, influxdb=influx, database=database)
