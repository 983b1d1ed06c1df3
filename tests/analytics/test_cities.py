"""Analytics per city: each city's run sees its own devices, in its own time zone and rounds, and its
alerts carry its id; a registry with one city runs exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import run_cities
from core import schema
from core.model import to_ms
from core.settings import AnalyticsSettings
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from storage.influx import InfluxClient, line
from storage.tables import AlertRow, DeviceLatestRow

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
    # the next round: 06:00 WITA (UTC+8) tomorrow in Makassar, 15:30 WIT (UTC+9) today in Jayapura
    assert derived["MKS-1"]["expected_pickup"] == "2026-03-02T22:00:00+00:00"
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
    reports = run_cities(sessions, influx, CFG.model_copy(update={"timezone": "Asia/Jakarta"}), now=NOW)
    assert list(reports) == [None] and reports[None].opened == {"bin_full": 1}
    with sessions() as s:
        [alert] = s.scalars(select(AlertRow)).all()
        assert alert.city_id == "makassar"  # the device's, from the registry
        [latest] = s.scalars(select(DeviceLatestRow)).all()
    assert latest.derived["expected_pickup"] == "2026-03-02T23:00:00+00:00"  # 06:00 WIB: the zone given
