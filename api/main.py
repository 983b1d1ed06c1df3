"""The API application factory."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from analytics.alerts import Notifier
from api import errors
from api.alert_state import active_snapshot
from api.bin_state import bin_snapshot
from api.deps import AppContext
from api.metrics import ApiMetrics, MetricsMiddleware
from api.pages import GZIP_LEVEL, GZIP_MIN_BYTES, PageCache
from api.query import reject_unknown_query
from api.routes import air, alerts, bins, collection, crew, devices, export, health, metrics, tokens, web
from api.security_headers import SecurityHeadersMiddleware
from lorong.core.settings import Settings
from lorong.storage.db import make_engine, session_factory
from lorong.storage.runtime import open_influx

ROUTERS = (health, metrics, devices, bins, air, alerts, collection, crew, export, tokens, web)
"""Every router, in the order their paths appear in the OpenAPI document."""

DESCRIPTION = """Waste-bin and air-quality telemetry for Makassar: devices, bins, air stations, alerts, routes.

Send an API token as `Authorization: Bearer <token>` (an admin creates one with
`lorong api token create --role crew --name NAME`). Every role reads; each acknowledges and clears
the alert types it acts on (`GET /alerts/types`): **crew** bins (and reports a bin emptied or not),
**officer** air quality, **technician** device health and manages devices, **supervisor** what the crew
could not do; **officer** and **admin** also download readings in bulk (`GET /export/readings`);
**admin** does everything.
`/health` and `/metrics` need no token. Values use FIWARE names in canonical units (each field
states its unit); times are ISO-8601 with an offset. The crew page is at `/`.
"""


def operation_id(route: APIRoute) -> str:
    """OpenAPI operationId ``<tag>-<function>`` (``alerts-acknowledge``), stable for generated clients."""
    return f"{route.tags[0] if route.tags else 'root'}-{route.name}"


def create_app(settings: Settings, notifiers: Sequence[Notifier] = (), bins_ttl_s: float = 15.0,
               alerts_ttl_s: float = 2.0, page_ttl_s: float = 1.0) -> FastAPI:
    """Build the FastAPI app for ``settings`` (the database must be migrated already).

    Args:
        settings: where the database, InfluxDB and broker are.
        notifiers: called for every alert change made through the API.
        bins_ttl_s: age (s) up to which the bins snapshot is served without a refresh; 0 rebuilds it
            on every request (see :mod:`api.snapshot`).
        alerts_ttl_s: the same for the active alerts (see :mod:`api.alert_state`).
        page_ttl_s: how long a rendered page of a snapshot is reused (see :mod:`api.pages`).

    A query parameter the matched route does not declare is a 422 (:func:`api.query.reject_unknown_query`).
    OpenAPI is served at ``/openapi.json``, the docs at ``/docs``, the crew page at ``/``. Every response
    carries the security headers of :mod:`api.security_headers`.
    """
    app = FastAPI(title="Lorong", version="0.1.0", description=DESCRIPTION, generate_unique_id_function=operation_id,
                  dependencies=[Depends(reject_unknown_query)])
    sessions = session_factory(make_engine(settings.database_url))
    app.state.ctx = AppContext(
        settings=settings, sessions=sessions, influx=open_influx(settings),
        bins=bin_snapshot(sessions, settings.analytics.full_threshold, ttl_s=bins_ttl_s),
        alerts=active_snapshot(sessions, ttl_s=alerts_ttl_s),
        pages=PageCache(page_ttl_s), notifiers=list(notifiers))
    app.state.metrics = ApiMetrics(sessions)
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount("/web", StaticFiles(directory=web.WEB_DIR), name="web")
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: error answers get the headers too
    return app
