"""``lorong analytics collections`` in a registry of several cities: each pickup in its own city's
time zone with a city column, and ``--city`` for one city."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics.cli import app
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import CollectionRow

NOW = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)
"""08:30 WITA, 07:30 WIB."""


def three_cities(sessions: Any) -> None:
    """Jakarta and Banyuwangi (WIB) beside the migrated Makassar (WITA), a bin in each, and a pickup of
    each bin stored already (the backfill finds nothing new in the empty InfluxDB)."""
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta"))
        add_city(s, CityIn(id="banyuwangi", name="Banyuwangi", timezone="Asia/Jakarta"))
        for dev, city, kec, at in (("MKS-BIN-0001", "makassar", "Tallo", datetime(2026, 12, 5, 22, 7, tzinfo=UTC)),
                                   ("JKT-BIN-0001", "jakarta", "Menteng", datetime(2026, 12, 5, 23, 7, tzinfo=UTC)),
                                   ("BWI-BIN-0001", "banyuwangi", "Giri", datetime(2026, 12, 5, 23, 40, tzinfo=UTC))):
            add_device(s, DeviceIn(id=dev, kind="bin", depth_mm=1000, city_id=city, kecamatan=kec))
            s.add(CollectionRow(device_id=dev, at=at, level_before=0.9, level_after=0.05, source="sensor"))


@pytest.fixture
def env(db_url: str, influx: InfluxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI on the test's registry and InfluxDB."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    monkeypatch.setenv("LORONG_INFLUX__URL", influx.url)
    monkeypatch.setenv("LORONG_INFLUX__DATABASE", influx.database)


def collections(*args: str) -> Any:
    """Run ``lorong analytics collections --hours 30`` as of :data:`NOW`."""
    return CliRunner().invoke(app, ["collections", "--hours", "30", "--now", NOW.isoformat(), *args])


def test_each_pickup_in_its_citys_zone_with_a_city_column(env: None, sessions: Any) -> None:
    three_cities(sessions)
    result = collections()
    assert result.exit_code == 0, result.output
    # every pickup was listed in WITA without a city: 06:07 WIB in Jakarta printed as 07:07+08:00
    assert result.output.splitlines() == [
        "2026-12-06T06:07+08:00  makassar    MKS-BIN-0001  Tallo    0.90 -> 0.05  sensor",
        "2026-12-06T06:07+07:00  jakarta     JKT-BIN-0001  Menteng  0.90 -> 0.05  sensor",
        "2026-12-06T06:40+07:00  banyuwangi  BWI-BIN-0001  Giri     0.90 -> 0.05  sensor",
        "3 pickups in the 30 h to 2026-12-06T00:30+00:00 (3 by sensor, 0 by crew); backfill: 0 found in InfluxDB, "
        "0 new"]


def test_city_option_lists_one_city(env: None, sessions: Any) -> None:
    three_cities(sessions)
    result = collections("--city", "jakarta")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "2026-12-06T06:07+07:00  jakarta  JKT-BIN-0001  Menteng  0.90 -> 0.05  sensor",
        "1 pickup in the 30 h to 2026-12-06T07:30+07:00 (1 by sensor, 0 by crew); backfill: 0 found in InfluxDB, "
        "0 new"]
    assert collections("--city", " Jakarta").output == result.output  # as typed on a phone: case and space
    unknown = collections("--city", "surabaya")
    assert unknown.exit_code == 2
    assert unknown.output.splitlines() == [
        "error: no city 'surabaya' in the registry (known: banyuwangi, jakarta, makassar)"]
