"""The demo's past has hourly and daily means as soon as it is loaded (a new user found hourly exports
empty after ``lorong demo`` until ``lorong storage retention backfill`` was run)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from firmware_sim.city import load_city, packaged_city
from firmware_sim.live import LiveCity
from firmware_sim.live_store import backfill
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration


def _means(influx: InfluxClient, source: str, device: str, group: str = "GROUP BY time(1h) fill(none)"
           ) -> dict[int, float]:
    q = f'SELECT mean("fillingLevel") FROM {source} WHERE "device_id" = $d AND time > now() - 3d {group}'
    return {int(t): float(v) for s in influx.query(q, {"d": device}) for t, v in s.values}


def test_demo_load_computes_the_means_of_its_past(make_settings: Callable[..., Settings], influx: InfluxClient,
                                                 sessions: sessionmaker[Session]) -> None:
    settings = make_settings(influx=influx)
    retention.apply(influx, settings.influx, settings.analytics.timezone)  # as `lorong stack up` does
    # the day before the last local noon: two local days of 12 h each, whatever the clock says (from
    # utcnow() at 23:5x WITA, the day's readings fell in one local day and the test failed)
    local = utcnow().astimezone(ZoneInfo(settings.analytics.timezone))
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    now = (noon if noon <= local else noon - timedelta(days=1)).astimezone(UTC)
    live = LiveCity(load_city(packaged_city("small")), now - timedelta(days=1), bins=3, stations=0, seed=5)
    loaded = backfill(live, now, sessions, influx, means_tz=settings.analytics.timezone)
    assert loaded.points >= 3 * 140
    device = sorted(live.bins)[0]
    raw = _means(influx, '"waste_container"', device)
    hourly = _means(influx, '"hourly"."waste_container"', device)
    assert len(raw) >= 24 and hourly == pytest.approx(raw)
    by_day = f"GROUP BY time(1d) fill(none) tz('{settings.analytics.timezone}')"  # local days, as the daily means
    daily = _means(influx, '"daily"."waste_container"', device, by_day)
    assert len(daily) == 2 and daily == pytest.approx(_means(influx, '"waste_container"', device, by_day))
