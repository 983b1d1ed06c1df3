"""``/bins/{id}/readings`` and ``/air/stations/{id}/readings`` read the hourly means for long windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import fmean

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.errors import InvalidRequest
from api.readings import Window, source
from core import schema
from core.model import to_ms, utcnow
from core.settings import Settings
from storage import retention
from storage.influx import InfluxClient, line
from tests.api.seed import fleet

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


@pytest.mark.parametrize(("days", "every", "ago_days", "want"), [
    (7, "1h", 0, "raw"), (7.01, "1h", 0, "hourly"), (30, "1d", 0, "hourly"), (30, "30m", 0, "raw"),
    (1, "1h", 95, "hourly"), (1, "90m", 0, "raw")])
def test_rule(days: float, every: str, ago_days: int, want: str) -> None:
    end = NOW - timedelta(days=ago_days)
    assert source(Window(end - timedelta(days=days), end, every), raw_days=90, now=NOW) == want


def test_rule_refuses_sub_hourly_buckets_before_the_raw_horizon() -> None:
    with pytest.raises(InvalidRequest, match="raw readings are kept 90 days"):
        source(Window(NOW - timedelta(days=91), NOW - timedelta(days=90), "10m"), raw_days=90, now=NOW)


def test_long_window_reads_the_hourly_means(client: httpx.Client, influx: InfluxClient, settings: Settings,
                                            sessions: sessionmaker[Session],
                                            auth: Callable[[str], dict[str, str]]) -> None:
    now = utcnow()
    fleet(sessions, now)
    h = auth("crew")
    url = "/bins/MKS-BIN-0001/readings"
    start = (now - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    params = {"start": start.isoformat(), "end": now.isoformat(), "every": "1h"}
    assert client.get(url, params=params, headers=h).status_code == 409  # no means on this database yet
    retention.apply(influx, settings.influx, settings.analytics.timezone)
    values: dict[int, list[float]] = {}
    lines = []
    for i in range(10 * 24 * 2 - 4):  # two readings an hour for ten days
        ts = start + timedelta(minutes=30 * i + 5)
        fill = round((i * 37 % 100) / 100, 2)
        values.setdefault(to_ms(ts.replace(minute=0)), []).append(fill)
        lines.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "MKS-BIN-0001"}, {schema.FIELD_FILL: fill},
                          to_ms(ts)))
    influx.write_lines(lines)
    retention.backfill(influx, settings.analytics.timezone, start, now)
    late = now - timedelta(minutes=1)  # a raw reading the means do not hold yet
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "MKS-BIN-0001"}, {schema.FIELD_FILL: 0.0},
                             to_ms(late))])
    body = client.get(url, params=params, headers=h).json()
    assert body["source"] == "hourly"
    got = {to_ms(datetime.fromisoformat(r["dateObserved"])): r["fillingLevel"] for r in body["readings"]}
    assert got == pytest.approx({t: fmean(v) for t, v in values.items()})
    short = client.get(url, params={**params, "start": (now - timedelta(days=2)).isoformat()}, headers=h).json()
    assert short["source"] == "raw"
    last_hour = to_ms(late.replace(minute=0, second=0, microsecond=0))
    assert short["readings"][-1]["fillingLevel"] == pytest.approx(fmean([*values.get(last_hour, []), 0.0]))
    old = client.get(url, params={"start": (now - timedelta(days=120)).isoformat(),
                                  "end": (now - timedelta(days=100)).isoformat(), "every": "15m"}, headers=h)
    assert old.status_code == 422 and "every=1h or longer" in old.json()["detail"]
