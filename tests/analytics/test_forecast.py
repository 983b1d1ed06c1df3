"""Time-to-full: Theil-Sen, the collection schedule, and bin forecasts end to end on InfluxDB
(fill rate since the last pickup, full_at, the soon-full warning, the history fallback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from analytics.forecast import from_history, from_series, next_collection, theil_sen
from analytics.jobs import run_once
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertRow, CollectionRow, DeviceLatestRow

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 WITA


def test_theil_sen_exact_and_robust() -> None:
    x = np.arange(10.0)
    assert theil_sen(x, 0.05 * x + 0.1) == pytest.approx((0.05, 0.1))
    y = 0.05 * x + 0.1
    y[[2, 7]] = [0.9, 0.0]  # two wild readings out of ten
    slope, intercept = theil_sen(x, y)
    assert slope == pytest.approx(0.05) and intercept == pytest.approx(0.1)
    assert np.polyfit(x, y, 1)[0] < 0.02  # least squares: less than a third of the true slope
    with pytest.raises(ValueError, match="at least 2"):
        theil_sen([1.0], [1.0])
    with pytest.raises(ValueError, match="all x are equal"):
        theil_sen([1.0, 1.0], [1.0, 2.0])


@pytest.mark.parametrize(("local", "expected_local"), [
    ("2026-03-02T10:00", "2026-03-03T06:00"),  # Monday after the round: Tuesday's
    ("2026-03-02T05:59", "2026-03-02T06:00"),
    ("2026-03-02T06:00", "2026-03-03T06:00"),  # a round is "next" only strictly after now
])
def test_next_collection_daily_wita(local: str, expected_local: str) -> None:
    now = datetime.fromisoformat(local + "+08:00").astimezone(UTC)
    got = next_collection(now, ["06:00"], range(7), "Asia/Makassar")
    assert got == datetime.fromisoformat(expected_local + "+08:00") and got.tzinfo == UTC


def test_next_collection_weekly_rounds() -> None:
    tuesday = datetime.fromisoformat("2026-03-03T09:00+08:00")
    got = next_collection(tuesday, ["14:00", "06:00"], [0, 3], "Asia/Makassar")  # Mondays and Thursdays
    assert got == datetime.fromisoformat("2026-03-05T06:00+08:00")
    with pytest.raises(ValueError, match="at least one"):
        next_collection(tuesday, [], [0], "Asia/Makassar")


def test_series_and_history_estimates() -> None:
    hours = np.array([-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0])
    fc = from_series(hours, 0.3 + 0.05 * hours, 0.3, NOW, 0.8)
    assert fc is not None and fc.rate_per_h == pytest.approx(0.05) and fc.method == "series"
    assert fc.full_at == NOW + timedelta(hours=10)
    full = from_series(hours, 0.9 + 0.05 * hours, 0.9, NOW, 0.8)  # crossed 0.8 two hours ago
    assert full is not None and full.full_at == NOW - timedelta(hours=2)
    flat = from_series(hours, np.full(7, 0.3), 0.3, NOW, 0.8)
    assert flat is not None and flat.full_at is None
    assert from_series(hours[-2:], np.array([0.1, 0.2]), 0.2, NOW, 0.8) is None  # too few points
    hist = from_history(np.array([30.0, 24.0, 25.0]), np.array([0.75, 0.6, 0.625]), 2.0, NOW, 0.8)
    assert hist is not None and hist.rate_per_h == pytest.approx(0.025) and hist.method == "history"
    assert hist.full_at == NOW + timedelta(hours=30)  # 32 h after the pickup, 2 h of them gone


def write(influx: InfluxClient, device: str, points: list[tuple[datetime, float]]) -> None:
    """fillingLevel points of one bin."""
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: device}, {"fillingLevel": v}, to_ms(t))
                        for t, v in points])


def ramp(pickup: datetime, rate_per_h: float, until: datetime, before: float = 0.9) -> list[tuple[datetime, float]]:
    """10-minute readings: ``before`` until a pickup, then 0 rising at ``rate_per_h``."""
    pts = [(pickup - timedelta(minutes=10 * k), before) for k in range(1, 7)]
    t = pickup
    while t <= until:
        pts.append((t, round(rate_per_h * (t - pickup).total_seconds() / 3600, 6)))
        t += timedelta(minutes=10)
    return pts


def test_bin_forecasts_on_influx(sessions: Any, influx: InfluxClient) -> None:
    with sessions.begin() as s:
        for dev in ("FAST", "SLOW", "UNSEEN", "JUST"):
            add_device(s, DeviceIn(id=dev, kind="bin", depth_mm=1000, installed_at=NOW - timedelta(days=30)))
        # JUST: earlier intervals of 30, 24, 25 h filled to 0.75, 0.60, 0.625 (0.025 per hour)
        for h, level in ((80, 0.9), (50, 0.75), (26, 0.6), (1, 0.625)):
            s.add(CollectionRow(device_id="JUST", at=NOW - timedelta(hours=h), level_before=level, level_after=0.0))
    pickup = NOW - timedelta(hours=6)
    write(influx, "FAST", ramp(pickup, 0.05, NOW))
    write(influx, "SLOW", ramp(pickup, 0.01, NOW))
    write(influx, "UNSEEN", ramp(pickup, 0.045, NOW))  # its pickup happens while the job is not running
    write(influx, "JUST", ramp(NOW - timedelta(hours=1), 0.025, NOW))
    cfg = AnalyticsSettings()
    # the job ran 20 minutes after the morning's pickups
    early = run_once(sessions, influx, cfg, now=pickup + timedelta(minutes=20))
    assert early.collections == 3
    with sessions.begin() as s:  # forget UNSEEN's pickup, as if the job had been down then
        s.execute(CollectionRow.__table__.delete().where(CollectionRow.device_id == "UNSEEN"))
    report = run_once(sessions, influx, cfg, now=NOW)
    assert report.forecasts == 4
    with sessions() as s:
        derived = {r.device_id: r.derived for r in s.scalars(select(DeviceLatestRow))}
        alerts = {(a.device_id, a.type): a for a in s.scalars(select(AlertRow))}
    fast = derived["FAST"]
    assert fast["fill_rate_per_h"] == pytest.approx(0.05) and fast["fill_rate_method"] == "series"
    assert fast["last_emptying"] == pickup.isoformat()
    # now the level is the median of the last three readings, 0.05 * 35 / 6; full at 0.8
    expected = NOW + timedelta(hours=(0.8 - 0.05 * 35 / 6) / 0.05)
    assert abs(datetime.fromisoformat(fast["full_at"]) - expected) < timedelta(seconds=1)
    assert derived["SLOW"]["fill_rate_per_h"] == pytest.approx(0.01)
    assert derived["UNSEEN"]["fill_rate_per_h"] == pytest.approx(0.045)  # cut at the fall in the hourly means
    assert derived["UNSEEN"]["last_emptying"] is None
    just = derived["JUST"]
    assert just["fill_rate_method"] == "history" and just["fill_rate_per_h"] == pytest.approx(0.025)
    assert datetime.fromisoformat(just["full_at"]) == NOW - timedelta(hours=1) + timedelta(hours=32)
    # FAST's truck came at 04:00 WITA: it is expected again on Tuesday 04:00 WITA (18 h away).
    # FAST is full in 9.9 h, but at 0.75 of its rate (soon_slow_factor) in 13.2 h: beyond the
    # 12-hour horizon the warning waits. SLOW (62 h) and JUST are not warned.
    assert fast["expected_pickup"] == "2026-03-02T20:00:00+00:00"
    to_full = (0.8 - 0.05 * 35 / 6) / 0.05
    assert datetime.fromisoformat(fast["full_at_slow"]) - NOW == pytest.approx(timedelta(hours=to_full / 0.75),
                                                                               abs=timedelta(seconds=1))
    assert not [k for k in alerts if k[1] == "bin_full_soon"]
    # with a day's horizon FAST opens; UNSEEN (no pickup known: when the city's trucks usually come,
    # 04:00 WITA as FAST's and SLOW's, 18 h away; not the configured 06:00 round) is full in 11.9 h
    # (0.045/h from 0.2625), in 15.9 h at 0.75 of that: before its truck, it opens
    run_once(sessions, influx, cfg.model_copy(update={"soon_horizon_h": 24.0}), now=NOW)
    with sessions() as s:
        soon = {a.device_id: a for a in s.scalars(select(AlertRow).where(AlertRow.type == "bin_full_soon"))}
    assert sorted(soon) == ["FAST", "UNSEEN"]
    assert (soon["FAST"].status, soon["FAST"].severity) == ("active", "warning")
    assert soon["FAST"].details["expected_pickup"] == "2026-03-02T20:00:00+00:00"
    assert soon["FAST"].details["overflow_h"] == pytest.approx(20 - 2 - to_full, abs=0.01)
    unseen = soon["UNSEEN"]
    assert unseen.type == "bin_full_soon" and unseen.details["expected_pickup"] == "2026-03-02T20:00:00+00:00"


def test_run_writes_state_points_for_grafana(sessions: Any, influx: InfluxClient) -> None:
    """Each run writes bin_state (fill, lat/lon, hours to full) and air_index (ISPU) at the run's time."""
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="FAST", kind="bin", depth_mm=1000, lat=-5.1, lon=119.4, kecamatan="Wajo",
                               installed_at=NOW - timedelta(days=30)))
        add_device(s, DeviceIn(id="AIR1", kind="air", kecamatan="Tallo", installed_at=NOW - timedelta(days=30)))
    pickup = NOW - timedelta(hours=6)
    write(influx, "FAST", ramp(pickup, 0.05, NOW))
    # PM2.5 24 h of 40 ug/m3: (100-50)/(55.4-15.5)*(40-15.5)+50 = 80.7, ceiling 81 (Sedang); PM10 60: 55
    influx.write_lines([line(schema.MEASUREMENT_AIR, {schema.TAG_DEVICE: "AIR1"}, {"pm25": 40.0, "pm10": 60.0},
                             to_ms(NOW - timedelta(hours=h))) for h in range(24)])
    run_once(sessions, influx, AnalyticsSettings(), now=pickup + timedelta(minutes=20))
    run_once(sessions, influx, AnalyticsSettings(), now=NOW)
    rows = influx.records(f'SELECT * FROM "{schema.MEASUREMENT_BIN_STATE}" WHERE time = {to_ms(NOW)}ms')
    assert len(rows) == 1
    state = rows[0]
    level = 0.05 * 35 / 6
    assert state["device_id"] == "FAST" and state["kecamatan"] == "Wajo"
    assert (state["lat"], state["lon"]) == (-5.1, 119.4)
    assert state["hours_to_full"] == pytest.approx((0.8 - level) / 0.05, abs=1e-3)
    assert state["fillingLevel"] == pytest.approx(0.05 * 6, abs=1e-9)  # newest reading
    air_rows = influx.records(f'SELECT * FROM "{schema.MEASUREMENT_AIR_INDEX}" WHERE time = {to_ms(NOW)}ms')
    assert [(r["device_id"], r["ispu"]) for r in air_rows] == [("AIR1", 81)]


def test_history_time_to_full_from_the_median_fill_rate() -> None:
    """Three days emptied at about 0.5: the Theil-Sen line of level against hours is flat (a
    longer interval happened to end lower), and inverted it said "never full"; the bin fills
    about 0.02 an hour and is full 40 h after its pickup."""
    hist = from_history(np.array([24.0, 25.0, 26.0]), np.array([0.5, 0.52, 0.49]), 4.0, NOW, 0.8)
    assert hist is not None and hist.method == "history"
    assert hist.rate_per_h == pytest.approx(0.52 / 25.0)
    assert hist.full_at == NOW + timedelta(hours=0.8 / (0.52 / 25.0) - 4.0)
