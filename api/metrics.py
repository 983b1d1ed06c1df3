"""Prometheus metrics of the API process, in the prometheus-client text format at ``GET /metrics``.

Series:

- ``lorong_api_requests_total{method, route, status}``: requests answered. ``route`` is the path
  template (``/bins/{device_id}/readings``), never the raw path, so ids cannot explode the label set.
- ``lorong_api_request_duration_seconds{method, route}``: histogram of time to the last body byte.
- ``lorong_alerts_active{type, severity, acknowledged}``: active alerts, read from SQL at scrape time.
- ``lorong_devices{kind, status}``: registered devices, read from SQL at scrape time.

Every label is bounded to known values, whatever a client sends (an unauthenticated client must
not be able to grow the page or the process): ``method`` is one of :data:`METHODS` or ``other``,
``route`` a path template of the app or ``unmatched``, ``status`` a three-digit HTTP status
(100-599) or ``other``.

Every app gets its own :class:`prometheus_client.CollectorRegistry`, so several apps (tests) never
clash on the global registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorong.storage.tables import AlertRow, DeviceRow

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets in seconds: fine below 50 ms, the API's p99 target."""


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods counted by name (RFC 9110 section 9 plus PATCH, RFC 5789); any other is ``other``."""


def method_label(method: str) -> str:
    """``method`` when it is in :data:`METHODS`, else ``other``."""
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    """``status`` as text when it is a valid HTTP status (100-599, RFC 9110 section 15), else ``other``."""
    return str(status) if 100 <= status <= 599 else "other"


class StateCollector(Collector):
    """Alert and device gauges computed from the SQL database on every scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield ``lorong_alerts_active`` and ``lorong_devices``."""
        alerts = GaugeMetricFamily("lorong_alerts_active", "Active alerts",
                                   labels=["type", "severity", "acknowledged"])
        devices = GaugeMetricFamily("lorong_devices", "Registered devices", labels=["kind", "status"])
        with self._sessions() as s:
            q = (select(AlertRow.type, AlertRow.severity, AlertRow.acknowledged, func.count())
                 .where(AlertRow.status == "active")
                 .group_by(AlertRow.type, AlertRow.severity, AlertRow.acknowledged))
            for type_, severity, acked, n in s.execute(q):
                alerts.add_metric([type_, severity, "true" if acked else "false"], float(n))
            for kind, status, n in s.execute(select(DeviceRow.kind, DeviceRow.status, func.count())
                                             .group_by(DeviceRow.kind, DeviceRow.status)):
                devices.add_metric([kind, status], float(n))
        yield alerts
        yield devices

    def describe(self) -> list[GaugeMetricFamily]:
        """No description up front: registering must not touch the database."""
        return []


class ApiMetrics:
    """The registry and request metrics of one app.

    Args:
        sessions: SQL session factory for the state gauges.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lorong_api_requests_total", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lorong_api_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(StateCollector(sessions))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request that took ``seconds`` (method and status bounded as the module says;
        ``route`` must already be a template or ``unmatched``)."""
        method = method_label(method)
        self.requests.labels(method, route, status_label(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware that feeds :class:`ApiMetrics` (no per-request task like BaseHTTPMiddleware).

    Args:
        app: the wrapped ASGI app.
        metrics: where to count.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)
