"""The API application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.deps import AppContext
from api.routes import alerts, bins, devices, health
from core.settings import Settings
from storage.db import make_engine, session_factory
from storage.influx import InfluxClient


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI app for ``settings`` (database must be migrated already).

    OpenAPI is served at ``/openapi.json`` and the docs at ``/docs``.
    """
    app = FastAPI(title="Lorong", version="0.1.0",
                  description="Waste-bin and air-quality telemetry: devices, bins, alerts.")
    influx = settings.influx
    app.state.ctx = AppContext(
        settings=settings,
        sessions=session_factory(make_engine(settings.database_url)),
        influx=InfluxClient(influx.url, influx.database,
                            influx.username, influx.password.get_secret_value() if influx.password else None,
                            influx.timeout_s),
    )
    errors.install(app)
    for module in (health, devices, bins, alerts):
        app.include_router(module.router)
    return app
