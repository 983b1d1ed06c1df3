"""Cities in the registry, on SQLite and PostgreSQL: the migration of a single-city registry, the
registry functions, per-city analytics settings and ``lorong cities``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from devices.cities import CityIn, add_city, city_settings, get_city, list_cities, resolve_city
from devices.registry import DeviceIn, DeviceUpdate, add_device, list_devices, update_device
from lorong.core.errors import CityExists, UnknownCity
from lorong.core.settings import AnalyticsSettings
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.tables import ApiTokenRow, DeviceRow, RoutePlanRow
from tests.devices.conftest import RunCli

JAKARTA = CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta", centre=(-6.2, 106.82),
                 kecamatan={"Gambir": (-6.176, 106.819), "Menteng": (-6.196, 106.838)},
                 analytics={"collection_times": ["05:30", "14:00"], "full_threshold": 0.75})


def test_single_city_registry_migrates_to_the_city_in_settings(empty_db_url: str) -> None:
    migrate(empty_db_url, "0007")
    engine = make_engine(empty_db_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for dev, kec, lat, lon in (("B1", "Wajo", -5.12, 119.41), ("B2", "Wajo", -5.14, 119.43),
                                   ("B3", "Tallo", -5.10, 119.44), ("B4", "", None, None)):
            conn.execute(text("INSERT INTO devices (id, kind, model, kecamatan, kelurahan, street, landmark, "
                              "blind_zone_mm, report_interval_s, status, firmware, installed_by, lat, lon, "
                              "created_at, updated_at) VALUES (:id, 'bin', '', :k, '', '', '', 0, 600, 'active', "
                              "'', '', :lat, :lon, :now, :now)"),
                         {"id": dev, "k": kec, "lat": lat, "lon": lon, "now": now})
        conn.execute(text("INSERT INTO api_tokens (name, role, token_hash, created_at) "
                          "VALUES ('budi', 'crew', 'h1', :now)"), {"now": now})
    engine.dispose()

    migrate(empty_db_url, default_city={"id": "jayapura", "name": "Jayapura", "timezone": "Asia/Jayapura"})

    sessions = session_factory(make_engine(empty_db_url))
    with sessions() as s:
        [city] = list_cities(s)
        assert (city.id, city.name, city.timezone) == ("jayapura", "Jayapura", "Asia/Jayapura")
        assert city.kecamatan == {"Tallo": [-5.1, 119.44], "Wajo": [-5.13, 119.42]}
        assert city.centre_lat == pytest.approx(-5.12) and city.centre_lon == pytest.approx(119.4266667)
        assert [(d.id, d.city_id) for d in list_devices(s)] == [(f"B{i}", "jayapura") for i in range(1, 5)]
        assert s.get(ApiTokenRow, 1).city_id is None  # type: ignore[union-attr]  # an old token sees every city
        # a device registered now, without a city, joins the only one
        assert add_device(s, DeviceIn(id="B5", kind="bin", depth_mm=1000)).city_id == "jayapura"
        s.commit()


@pytest.mark.parametrize("cities", [1, 2])
def test_migration_0009_gives_old_route_plans_the_only_city(empty_db_url: str, cities: int) -> None:
    migrate(empty_db_url, "0008")
    engine = make_engine(empty_db_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO route_plans (day, vehicle, stops, distance_km, created_at) "
                          "VALUES ('2026-12-01', 0, '{}', 1.5, :now)"), {"now": now})
        if cities == 2:
            conn.execute(text("INSERT INTO cities (id, name, timezone, kecamatan, analytics, created_at) "
                              "VALUES ('jakarta', 'Jakarta', 'Asia/Jakarta', '{}', '{}', :now)"), {"now": now})
    engine.dispose()
    migrate(empty_db_url)
    # one city: the plan is its own; several: nobody can tell, it stays a plan of no city
    with session_factory(make_engine(empty_db_url))() as s:
        assert [(p.city_id, p.day) for p in s.scalars(select(RoutePlanRow))] == [
            ("makassar" if cities == 1 else None, "2026-12-01")]


def test_default_city_is_makassar_without_settings(db_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        assert [(c.id, c.timezone) for c in list_cities(s)] == [("makassar", "Asia/Makassar")]


def test_several_cities_need_a_named_city(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_city(s, JAKARTA)
        with pytest.raises(CityExists):
            add_city(s, JAKARTA)
    with sessions.begin() as s:
        assert add_device(s, DeviceIn(id="JKT-1", kind="bin", depth_mm=1000, city_id="jakarta")).city_id == "jakarta"
        assert add_device(s, DeviceIn(id="MKS-1", kind="bin", depth_mm=1000, city_id="makassar")).city_id == "makassar"
    with sessions() as s, pytest.raises(UnknownCity, match="name the device's city"):
        add_device(s, DeviceIn(id="X-1", kind="bin", depth_mm=1000))
    with sessions() as s, pytest.raises(UnknownCity, match=r"no city 'bandung'.*known: jakarta, makassar"):
        add_device(s, DeviceIn(id="X-1", kind="bin", depth_mm=1000, city_id="bandung"))
    with sessions.begin() as s:
        assert [d.id for d in list_devices(s, city_id="jakarta")] == ["JKT-1"]
        update_device(s, "MKS-1", DeviceUpdate(city_id="jakarta"))
        assert [d.id for d in list_devices(s, city_id="jakarta")] == ["JKT-1", "MKS-1"]
        with pytest.raises(UnknownCity):
            update_device(s, "MKS-1", DeviceUpdate(city_id="bandung"))
    with sessions() as s:
        row = get_city(s, "jakarta")
        assert row.kecamatan == {"Gambir": [-6.176, 106.819], "Menteng": [-6.196, 106.838]}
        assert resolve_city(s, "jakarta") == "jakarta"


def test_city_settings_override_the_deployment() -> None:
    base = AnalyticsSettings(full_threshold=0.8, collection_times=["06:00"], timezone="Asia/Makassar")
    row = type("Row", (), {"timezone": "Asia/Jakarta", "analytics": JAKARTA.analytics})()
    cfg = city_settings(base, row)  # type: ignore[arg-type]
    assert (cfg.timezone, cfg.collection_times, cfg.full_threshold) == ("Asia/Jakarta", ["05:30", "14:00"], 0.75)
    assert cfg.overflow_threshold == base.overflow_threshold  # not overridden: the deployment's


@pytest.mark.parametrize(("field", "value", "message"), [
    ("timezone", "Asia/Nowhere", "unknown time zone"),
    ("id", "Jakarta Pusat", "should match pattern"),
    ("analytics", {"collection_times": ["25:00"]}, "24-hour HH:MM"),
    ("analytics", {"fill_speed": 1}, "unknown analytics setting"),
    ("analytics", {"timezone": "Asia/Jakarta"}, "cannot be set per city"),
    ("kecamatan", {"Gambir": (-96.0, 106.8)}, "not a WGS84"),
    ("id", "alerts", "reserved"),  # lorong/alerts/... is the city-less MQTT alert topic
])
def test_bad_cities_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CityIn.model_validate({**JAKARTA.model_dump(), field: value})


def test_cli_add_and_list(run_cli: RunCli, sessions: sessionmaker[Session], cli_env: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from devices import cities_cli

    runner = CliRunner()
    add = runner.invoke(cities_cli.app, ["add", "jakarta", "--name", "Jakarta", "--timezone", "Asia/Jakarta",
                                         "--centre", "-6.2,106.82", "--kecamatan", "Gambir=-6.176,106.819",
                                         "--analytics", '{"collection_times": ["05:30"]}'], env=cli_env)
    assert add.exit_code == 0, add.output
    assert "registered city jakarta (Jakarta, Asia/Jakarta)" in add.stdout
    again = runner.invoke(cities_cli.app, ["add", "jakarta", "--name", "J", "--timezone", "Asia/Jakarta"],
                          env=cli_env)
    assert again.exit_code == 1 and "already registered" in again.stderr
    bad = runner.invoke(cities_cli.app, ["add", "x", "--name", "X", "--timezone", "Mars/Base"], env=cli_env)
    assert bad.exit_code == 2 and "unknown time zone" in bad.stderr
    assert run_cli("add", "JKT-1", "--kind", "bin", "--depth-mm", "1000", "--city", "jakarta").exit_code == 0
    none = run_cli("add", "X-1", "--kind", "bin", "--depth-mm", "1000")
    assert none.exit_code == 1 and "name the device's city" in none.stderr
    shown = runner.invoke(cities_cli.app, ["list"], env={**cli_env, "COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.startswith("│")}
    assert "Asia/Jakarta" in lines["jakarta"] and "-6.2000,106.8200" in lines["jakarta"]
    assert lines["jakarta"].split("│")[6].strip() == "1"  # its one device
    with sessions() as s:
        assert s.get(DeviceRow, "JKT-1").city_id == "jakarta"  # type: ignore[union-attr]
