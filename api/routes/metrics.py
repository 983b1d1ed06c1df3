"""``GET /metrics``: Prometheus text exposition (no token, like most scrape targets: keep it on a private network)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import generate_latest

from api.metrics import ApiMetrics

router = APIRouter(tags=["health"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Text format 0.0.4: what every Prometheus version parses (our metric names need no UTF-8 escaping)."""


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"}})
def metrics(request: Request) -> Response:
    """Request counts and latency histogram per route; active alerts and devices as gauges."""
    m: ApiMetrics = request.app.state.metrics
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE)
