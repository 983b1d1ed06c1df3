"""Analytics per city: each city's run sees its own devices, in its own time zone and rounds, and its
alerts carry its id; a registry with one city runs exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import run_cities
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.errors import StoreUnavailable
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertRow, DeviceLatestRow

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 WITA in Makassar, 10:00 WIT in Jayapura
CFG = AnalyticsSettings(collection_times=["06:00"], timezone="Asia/Makassar", forecast_history_days=0)


def _fill(influx: InfluxClient, device: str, level: float, city: str) -> None:
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: device, schema.TAG_KECAMATAN: "K",
                                                      schema.TAG_CITY: city},
                             {schema.FIELD_FILL: level, schema.FIELD_BATTERY: 0.9},
                             to_ms(NOW - k * timedelta(minutes=10)))
                        for k in range(6)])


def _setup(sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    with sessions.begin() as s:
        add_city(s, CityIn(id="jayapura", name="Jayapura", timezone="Asia/Jayapura",
                           analytics={"collection_times": ["15:30"], "full_threshold": 0.6}))
        for dev, city in (("MKS-1", "makassar"), ("JYP-1", "jayapura")):
            add_device(s, DeviceIn(id=dev, kind="bin", city_id=city, depth_mm=1000, report_interval_s=600))
    _fill(influx, "MKS-1", 0.7, "makassar")  # below Makassar's 0.8: not full
    _fill(influx, "JYP-1", 0.7, "jayapura")  # above Jayapura's own 0.6: full


def test_each_city_runs_with_its_own_zone_rounds_and_thresholds(sessions: sessionmaker[Session],
                                                                influx: InfluxClient) -> None:
    _setup(sessions, influx)
    reports = run_cities(sessions, influx, CFG, now=NOW)
    assert set(reports) == {"jayapura", "makassar"}
    assert reports["jayapura"].opened == {"bin_full": 1} and reports["makassar"].opened == {}
    with sessions() as s:
        [alert] = s.scalars(select(AlertRow)).all()
        assert (alert.device_id, alert.city_id) == ("JYP-1", "jayapura")
        derived = {r.device_id: r.derived for r in s.scalars(select(DeviceLatestRow))}
    # Makassar's 06:00 WITA (UTC+8) round is out (it started 3 h ago, no bin emptied yet): now; Jayapura's
    # is at 15:30 WIT (UTC+9) today
    assert derived["MKS-1"]["expected_pickup"] == NOW.isoformat()
    assert derived["JYP-1"]["expected_pickup"] == "2026-03-02T06:30:00+00:00"
    # each city's run wrote its bins' Grafana state with its city tag
    got = {(s.tags.get("city"), s.tags.get("device_id")) for s in influx.query(
        f'SELECT last("fillingLevel") FROM "{schema.MEASUREMENT_BIN_STATE}" GROUP BY "city", "device_id"')}
    assert got == {("makassar", "MKS-1"), ("jayapura", "JYP-1")}


def test_one_city_runs_as_before(sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    """One city: one run over every device with the settings as given (its zone too)."""
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-1", kind="bin", depth_mm=1000))
    _fill(influx, "MKS-1", 0.9, "makassar")
    reports = run_cities(sessions, influx, CFG.model_copy(update={"timezone": "Asia/Jakarta",
                                                                  "collection_times": ["23:00"]}), now=NOW)
    assert list(reports) == [None] and reports[None].opened == {"bin_full": 1}
    with sessions() as s:
        [alert] = s.scalars(select(AlertRow)).all()
        assert alert.city_id == "makassar"  # the device's, from the registry
        [latest] = s.scalars(select(DeviceLatestRow)).all()
    assert latest.derived["expected_pickup"] == "2026-03-02T16:00:00+00:00"  # 23:00 WIB: the zone given


def _two_cities(sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    """Two bins per city, one of them full (0.9) in each."""
    with sessions.begin() as s:
        add_city(s, CityIn(id="jayapura", name="Jayapura", timezone="Asia/Jayapura"))
        for dev, city in (("MKS-1", "makassar"), ("MKS-2", "makassar"), ("JYP-1", "jayapura"), ("JYP-2", "jayapura")):
            add_device(s, DeviceIn(id=dev, kind="bin", city_id=city, depth_mm=1000, report_interval_s=600))
    for dev, city in (("MKS-1", "makassar"), ("JYP-1", "jayapura")):
        _fill(influx, dev, 0.9, city)
    for dev, city in (("MKS-2", "makassar"), ("JYP-2", "jayapura")):
        _fill(influx, dev, 0.2, city)


def test_cities_run_side_by_side_each_on_its_own_devices(sessions: sessionmaker[Session],
                                                         influx: InfluxClient) -> None:
    """With two workers both cities' runs are under way at once, and each run reads, decides and
    writes for its own two bins only."""
    _two_cities(sessions, influx)
    reports = run_cities(sessions, influx, CFG.model_copy(update={"city_workers": 2, "collection_times": ["23:00"]}),
                         now=NOW)
    assert list(reports) == ["jayapura", "makassar"]
    jyp, mks = reports["jayapura"], reports["makassar"]
    assert jyp.span[0] < mks.span[1] and mks.span[0] < jyp.span[1], (jyp.span, mks.span)  # overlapping
    for r in (jyp, mks):
        assert r.opened == {"bin_full": 1} and r.latest_rows == 2
    with sessions() as s:
        got = {(a.device_id, a.city_id) for a in s.scalars(select(AlertRow))}
        derived = {r.device_id: r.derived for r in s.scalars(select(DeviceLatestRow))}
    assert got == {("MKS-1", "makassar"), ("JYP-1", "jayapura")}
    assert derived["JYP-2"]["expected_pickup"] == "2026-03-02T14:00:00+00:00"  # 23:00 WIT (UTC+9)
    assert derived["MKS-2"]["expected_pickup"] == "2026-03-02T15:00:00+00:00"  # 23:00 WITA (UTC+8)


def test_one_worker_runs_cities_one_after_the_other(sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    """``city_workers`` bounds the cities under way at once: with one, the spans do not overlap."""
    _two_cities(sessions, influx)
    reports = run_cities(sessions, influx, CFG.model_copy(update={"city_workers": 1}), now=NOW)
    first, second = sorted(reports.values(), key=lambda r: r.span[0])
    assert first.span[1] <= second.span[0]
    assert {k: r.opened for k, r in reports.items()} == {"jayapura": {"bin_full": 1}, "makassar": {"bin_full": 1}}


def test_influxdb_down_is_one_line_per_city_not_a_traceback(sessions: sessionmaker[Session], influx: InfluxClient,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """``lorong stack down`` under a running demo: each city's run logged a full traceback every minute."""
    _setup(sessions, influx)
    down = InfluxClient(f"http://127.0.0.1:{stack.free_port()}", "lorong", timeout_s=1.0)
    with pytest.raises(StoreUnavailable):
        run_cities(sessions, down, CFG, now=NOW)
    failed = [r for r in caplog.records if "analytics run of city" in r.getMessage()]
    assert len(failed) == 2 and all(r.levelname == "WARNING" and r.exc_info is None for r in failed)
    assert "InfluxDB" in failed[0].getMessage() or "influx" in failed[0].getMessage().lower()
