"""``/bins/{id}/readings`` and ``/air/stations/{id}/readings`` read the hourly or daily means for long windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import fmean
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.errors import InvalidRequest
from api.readings import Window, day_offset_s, day_zone, source
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms, utc_from_ms, utcnow
from lorong.core.settings import InfluxSettings, Settings
from lorong.storage import retention, stack
from lorong.storage.influx import InfluxClient, line
from lorong.storage.runtime import day_zones
from tests.api.conftest import serve
from tests.api.seed import fleet

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
HALF_STEP = 0.0005 + 1e-12
"""The API rounds a fill level to 0.001 (:func:`lorong.core.metrics.shown`): at most half a step off, a tie
either way."""


@pytest.mark.parametrize(("days", "every", "ago_days", "want"), [
    (7, "1h", 0, "raw"), (7.01, "1h", 0, "hourly"), (30, "1d", 0, "daily"), (30, "30m", 0, "raw"),
    (1, "1h", 95, "hourly"), (1, "90m", 0, "raw"), (7, "1d", 0, "raw"), (8, "2d", 0, "daily"), (30, "36h", 0, "hourly"),
    (1, "1d", 95, "daily"), (1, "1d", 400, "daily"), (1, "1w", 400, "daily")])
def test_rule(days: float, every: str, ago_days: int, want: str) -> None:
    end = NOW - timedelta(days=ago_days)
    assert source(Window(end - timedelta(days=days), end, every), raw_days=90, now=NOW, hourly_days=365) == want


def test_rule_refuses_sub_daily_buckets_before_the_hourly_horizon() -> None:
    old = Window(NOW - timedelta(days=400), NOW - timedelta(days=399), "1h")
    with pytest.raises(InvalidRequest, match=r"hourly means are kept 365 days.*every=1d or longer"):
        source(old, raw_days=90, now=NOW, hourly_days=365)
    assert source(old, raw_days=90, now=NOW, hourly_days=0) == "hourly"  # hourly means kept forever


def test_day_buckets_start_at_local_midnight() -> None:
    assert day_offset_s("1d", "Asia/Makassar", NOW) == 16 * 3600  # 00:00 WITA = 16:00 UTC
    assert day_offset_s("7d", "Asia/Jakarta", NOW) == 17 * 3600
    assert day_offset_s("24h", "Asia/Makassar", NOW) == 16 * 3600
    assert day_offset_s("12h", "Asia/Makassar", NOW) == 0
    assert day_zone("1d", "Asia/Makassar", NOW) is None  # Indonesia: a fixed offset, as before


def test_day_buckets_of_a_zone_with_daylight_saving_are_grouped_by_the_zone() -> None:
    assert (day_offset_s("1d", "Europe/Berlin", NOW), day_zone("1d", "Europe/Berlin", NOW)) == (0, "Europe/Berlin")
    assert day_zone("2d", "America/New_York", NOW) == "America/New_York"
    assert (day_offset_s("1h", "Europe/Berlin", NOW), day_zone("1h", "Europe/Berlin", NOW)) == (0, None)


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


def test_range_older_than_raw_retention_reads_the_means(make_settings: Callable[..., Settings], influx: InfluxClient,
                                                        sessions: sessionmaker[Session],
                                                        auth: Callable[[str], dict[str, str]]) -> None:
    """Ten days of raw readings, their means backfilled, then the raw shards older than two days dropped
    (what InfluxDB's retention service does with ``raw_days = 2``): the old days still come back, as the
    hourly and the local-day means of the readings computed before they were dropped."""
    now = utcnow()
    fleet(sessions, now)
    settings = make_settings(influx=influx)
    settings = settings.model_copy(update={"influx": settings.influx.model_copy(update={"raw_days": 2})})
    retention.apply(influx, settings.influx.model_copy(update={"raw_days": 30}), settings.analytics.timezone)
    wita = ZoneInfo(settings.analytics.timezone)
    start = (now - timedelta(days=10)).astimezone(wita).replace(hour=0, minute=0, second=0, microsecond=0)
    hours: dict[int, list[float]] = {}
    days: dict[int, list[float]] = {}
    lines = []
    t, i = start + timedelta(minutes=7), 0
    while t < now:
        fill = round((i * 53 % 97) / 100, 2)
        hours.setdefault(to_ms(t.replace(minute=0)), []).append(fill)
        days.setdefault(to_ms(t.replace(hour=0, minute=0)), []).append(fill)
        lines.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "MKS-BIN-0001"}, {schema.FIELD_FILL: fill},
                          to_ms(t)))
        t, i = t + timedelta(minutes=20), i + 1
    influx.write_lines(lines)
    retention.backfill(influx, settings.analytics.timezone, start, now)
    horizon = now - timedelta(days=2)
    old_shards = [r["id"] for s in influx.query("SHOW SHARDS") if s.name == influx.database for r in s.records()
                  if r["retention_policy"] == schema.RP_RAW and datetime.fromisoformat(r["end_time"]) < horizon]
    assert len(old_shards) >= 7
    for shard in old_shards:
        influx.command(f"DROP SHARD {shard}")
    assert influx.query(f'SELECT count("fillingLevel") FROM "{schema.MEASUREMENT_BIN}" '
                        f"WHERE time < {to_ms(start + timedelta(days=7))}ms") == []  # the raw readings are gone
    end = start + timedelta(days=7)
    url, h = "/bins/MKS-BIN-0001/readings", auth("crew")
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            params = {"start": start.isoformat(), "end": end.isoformat()}
            hourly = client.get(url, params={**params, "every": "1h"}, headers=h).json()
            daily = client.get(url, params={**params, "every": "1d"}, headers=h).json()
            recent = client.get(url, params={"start": (now - timedelta(days=1)).isoformat(), "every": "1d"},
                                headers=h).json()
            old_minutes = client.get(url, params={**params, "every": "30m"}, headers=h)
    finally:
        srv.stop()
    assert hourly["source"] == "hourly" and daily["source"] == "daily"
    got = {to_ms(datetime.fromisoformat(r["dateObserved"])): r["fillingLevel"] for r in hourly["readings"]}
    want = {t: fmean(v) for t, v in hours.items() if to_ms(start) <= t < to_ms(end)}
    assert len(got) == 7 * 24 and got == pytest.approx(want, abs=HALF_STEP)
    got = {to_ms(datetime.fromisoformat(r["dateObserved"])): r["fillingLevel"] for r in daily["readings"]}
    assert got == pytest.approx({t: fmean(v) for t, v in days.items() if to_ms(start) <= t < to_ms(end)},
                                abs=HALF_STEP)
    assert len(got) == 7 and all(datetime.fromisoformat(r["dateObserved"]).astimezone(wita).hour == 0
                                 for r in daily["readings"])
    assert recent["source"] == "raw"  # a short window: raw readings, in the same local-day buckets
    # the local day of the newest reading (at 00:0x WITA the new day has none yet)
    today = to_ms(utc_from_ms(max(hours)).astimezone(wita).replace(hour=0, minute=0, second=0, microsecond=0))
    assert recent["readings"][-1]["dateObserved"] == utc_from_ms(today).isoformat().replace("+00:00", "Z")
    assert old_minutes.status_code == 422 and "every=1h or longer" in old_minutes.json()["detail"]



def test_day_buckets_follow_each_city_zone(influx: InfluxClient, settings: Settings, sessions: sessionmaker[Session],
                                           auth: Callable[[str], dict[str, str]]) -> None:
    """A Jakarta bin (WIB, UTC+7) and a Makassar bin (WITA, UTC+8) on one platform: ``every=1d`` gives each
    bin's buckets at its own city's midnight (17:00 and 16:00 UTC), from raw readings (a short window) and
    from the daily means (a long one) alike, each bucket the mean of the raw readings of that local day."""
    now = utcnow()
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta"))
        add_device(s, DeviceIn(id="JKT-BIN-1", kind="bin", depth_mm=1000, city_id="jakarta", kecamatan="Gambir"))
        add_device(s, DeviceIn(id="MKS-BIN-1", kind="bin", depth_mm=1000, city_id="makassar", kecamatan="Wajo"))
    zones = day_zones(settings)
    retention.apply(influx, settings.influx, zones)
    bins = {"JKT-BIN-1": ("jakarta", ZoneInfo("Asia/Jakarta"), 17),  # (city, zone, local midnight in UTC)
            "MKS-BIN-1": ("makassar", ZoneInfo("Asia/Makassar"), 16)}
    first = now - timedelta(days=11)
    days: dict[tuple[str, int], list[float]] = {}
    lines = []
    for dev, (city, tz, _) in bins.items():
        t, i = first, 0
        while t < now:
            fill = round((i * 53 % 97) / 100, 2)
            local_day = t.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
            days.setdefault((dev, to_ms(local_day)), []).append(fill)
            lines.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev, schema.TAG_CITY: city},
                              {schema.FIELD_FILL: fill}, to_ms(t)))
            t, i = t + timedelta(minutes=20), i + 1
    influx.write_lines(lines)
    retention.backfill(influx, zones, first, now)
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for dev, (_, tz, hour) in bins.items():
                midnight = (now - timedelta(days=10)).astimezone(tz).replace(hour=0, minute=0, second=0,
                                                                            microsecond=0)
                for rp, a, n in (("daily", 1, 8), ("raw", 7, 2)):
                    win = (midnight + timedelta(days=a), midnight + timedelta(days=a + n))
                    body = client.get(f"/bins/{dev}/readings", headers=auth("admin"),  # a provincial token
                                      params={"start": win[0].isoformat(), "end": win[1].isoformat(),
                                              "every": "1d"}).json()
                    assert body["source"] == rp, body
                    got = {to_ms(datetime.fromisoformat(r["dateObserved"])): r["fillingLevel"]
                           for r in body["readings"]}
                    assert [utc_from_ms(t).hour for t in got] == [hour] * n, (dev, rp)  # local midnight
                    want = {t: fmean(v) for (d, t), v in days.items()
                            if d == dev and to_ms(win[0]) <= t < to_ms(win[1])}
                    assert len(want) == n and got == pytest.approx(want, abs=HALF_STEP), (dev, rp)
    finally:
        srv.stop()


def test_day_buckets_of_a_dst_city_are_its_local_days(make_settings: Callable[..., Settings], influx: InfluxClient,
                                                      sessions: sessionmaker[Session],
                                                      auth: Callable[[str], dict[str, str]]) -> None:
    """A Berlin bin around the latest change of the clock (a 23- or 25-hour day): ``every=1d`` buckets start
    at Berlin's midnight before and after it, from raw readings and from the daily means alike, each the
    mean of the raw readings of that local day (a fixed offset would shift one side's days by an hour)."""
    settings = make_settings(mqtt_port=stack.free_port(),
                             influx=InfluxSettings(url=influx.url, database=influx.database, raw_days=400))
    now = utcnow()
    berlin = ZoneInfo("Europe/Berlin")
    with sessions.begin() as s:
        add_city(s, CityIn(id="berlin", name="Berlin", timezone="Europe/Berlin"))
        add_device(s, DeviceIn(id="BER-BIN-1", kind="bin", depth_mm=1000, city_id="berlin", kecamatan="Mitte"))
    zones = day_zones(settings)
    retention.apply(influx, settings.influx, zones)
    last = (now - timedelta(days=6)).astimezone(berlin).date()
    day = next(d for d in (last - timedelta(days=k) for k in range(400))  # the latest day the clock changed
               if (datetime.combine(d + timedelta(days=1), datetime.min.time(), berlin).astimezone(UTC)
                   - datetime.combine(d, datetime.min.time(), berlin).astimezone(UTC)) != timedelta(days=1))
    midnights = [datetime.combine(day + timedelta(days=d), datetime.min.time(), berlin).astimezone(UTC)
                 for d in range(-4, 6)]  # ten local days, the change in the fifth
    days: dict[int, list[float]] = {}
    lines, t, i = [], midnights[0], 0
    while t < midnights[-1]:
        fill = round((i * 53 % 97) / 100, 2)
        days.setdefault(max(to_ms(m) for m in midnights if m <= t), []).append(fill)
        lines.append(line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "BER-BIN-1", schema.TAG_CITY: "berlin"},
                          {schema.FIELD_FILL: fill}, to_ms(t)))
        t, i = t + timedelta(minutes=20), i + 1
    influx.write_lines(lines)
    retention.backfill(influx, zones, midnights[0], midnights[-1])
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for rp, a, n in (("daily", 0, 9), ("raw", 2, 5)):
                win = (midnights[a], midnights[a + n])
                body = client.get("/bins/BER-BIN-1/readings", headers=auth("admin"),
                                  params={"start": win[0].isoformat(), "end": win[1].isoformat(), "every": "1d"}).json()
                assert body["source"] == rp, body
                got = {to_ms(datetime.fromisoformat(r["dateObserved"])): r["fillingLevel"] for r in body["readings"]}
                assert {utc_from_ms(t).astimezone(berlin).hour for t in got} == {0}, rp  # local midnight
                assert len({utc_from_ms(t).astimezone(berlin).utcoffset() for t in got}) == 2, rp  # both sides
                want = {t: fmean(v) for t, v in days.items() if to_ms(win[0]) <= t < to_ms(win[1])}
                assert len(want) == n and got == pytest.approx(want, abs=HALF_STEP), rp
    finally:
        srv.stop()
