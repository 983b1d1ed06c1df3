"""``GET /health``: broker, InfluxDB and database reachability."""

from __future__ import annotations

import socket

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ContextDep
from api.schemas import ComponentHealth, HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health(ctx: ContextDep) -> HealthOut:
    """Check that the MQTT broker accepts TCP, InfluxDB answers ``/ping`` and the database a query."""
    mqtt = ctx.settings.mqtt
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=1.0):
            broker = ComponentHealth(ok=True, detail=f"{mqtt.host}:{mqtt.port}")
    except OSError as exc:
        broker = ComponentHealth(ok=False, detail=f"{mqtt.host}:{mqtt.port}: {exc}")
    influx = ComponentHealth(ok=ctx.influx.ping(), detail=ctx.influx.url)
    try:
        with ctx.sessions() as s:
            s.execute(text("SELECT 1"))
        database = ComponentHealth(ok=True, detail=ctx.settings.database_url.split("://", 1)[0])
    except Exception as exc:  # any driver error means "not reachable"
        database = ComponentHealth(ok=False, detail=str(exc)[:200])
    ok = broker.ok and influx.ok and database.ok
    return HealthOut(status="ok" if ok else "degraded", broker=broker, influxdb=influx, database=database)
