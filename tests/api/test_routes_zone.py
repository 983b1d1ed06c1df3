"""``GET /routes`` picks "today" in the configured ``analytics.timezone``, the zone route plans are
saved in (:func:`analytics.routes.save`), not a fixed WITA date (issue 14, item 12)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings, Settings
from lorong.storage.influx import InfluxClient
from tests.api.conftest import bearer, serve
from tests.api.seed import add_route

pytestmark = pytest.mark.integration


def _zone_with_another_date(now: datetime) -> str:
    """A zone whose calendar date differs from Makassar's (UTC+8) at ``now`` (one of two always does)."""
    wita = now.astimezone(ZoneInfo("Asia/Makassar")).date()
    return next(z for z in ("Etc/GMT+12", "Pacific/Kiritimati") if now.astimezone(ZoneInfo(z)).date() != wita)


def test_routes_today_in_the_configured_zone(make_settings: Callable[..., Settings], influx: InfluxClient,
                                             sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    now = utcnow()
    zone = _zone_with_another_date(now)
    local_today = now.astimezone(ZoneInfo(zone)).date().isoformat()
    wita_today = now.astimezone(ZoneInfo("Asia/Makassar")).date().isoformat()
    with sessions.begin() as s:
        add_route(s, local_today, 1, ["LOCAL-1"], 1.0, now)
        add_route(s, wita_today, 2, ["WITA-1"], 2.0, now)
    srv = serve(make_settings(influx=influx, analytics=AnalyticsSettings(timezone=zone)))
    try:
        routes = httpx.get(f"{srv.url}/routes", headers=bearer(tokens["crew"]), timeout=10).json()
    finally:
        srv.stop()
    assert [(r["day"], r["vehicle"]) for r in routes] == [(local_today, 1)]
