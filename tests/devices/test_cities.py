"""Cities in the registry, on SQLite and PostgreSQL: the migration of a single-city registry, the
registry functions, per-city analytics settings and ``lorong cities``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from devices.cities import (
    CityChange,
    CityIn,
    add_city,
    city_settings,
    get_city,
    list_cities,
    remove_city,
    resolve_city,
    update_city,
)
from devices.registry import DeviceIn, DeviceUpdate, add_device, list_devices, update_device
from lorong.core.errors import CityExists, CityInUse, UnknownCity
from lorong.core.settings import AnalyticsSettings
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.tables import (
    AlertHistoryRow,
    AlertRow,
    ApiTokenRow,
    CollectionRow,
    DeviceCredentialRow,
    DeviceLatestRow,
    DeviceRow,
    IdempotencyKeyRow,
    NotificationOutboxRow,
    RoutePlanRow,
)
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
    with sessions() as s, pytest.raises(UnknownCity, match=r"name the device's city with --city \(one of jakarta, "
                                                          r"makassar\)$"):  # every city: it cut the list at two
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
    # a city id as a person writes it: it said "city_id: String should match pattern '^[a-z0-9]...'"
    assert run_cli("add", "JKT-2", "--kind", "bin", "--depth-mm", "1000", "--city", "Jakarta").exit_code == 0
    none = run_cli("add", "X-1", "--kind", "bin", "--depth-mm", "1000")
    assert none.exit_code == 1 and "name the device's city" in none.stderr
    shown = runner.invoke(cities_cli.app, ["list"], env={**cli_env, "COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    cities, overrides = shown.stdout.split("\n\n")  # the cities, then their analytics overrides
    lines = {line.split()[0]: line.split() for line in cities.splitlines()}
    assert "Asia/Jakarta" in lines["jakarta"] and "-6.2000,106.8200" in lines["jakarta"]
    assert lines["jakarta"][-1] == "2"  # its two devices
    assert 'jakarta  {"collection_times": ["05:30"]}' in overrides
    with sessions() as s:
        assert s.get(DeviceRow, "JKT-1").city_id == "jakarta"  # type: ignore[union-attr]


def test_update_city_changes_what_is_given_and_keeps_the_rest(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_city(s, JAKARTA)
    with sessions.begin() as s:
        done = update_city(s, "jakarta", CityChange(
            name="DKI Jakarta", timezone="Asia/Makassar", kecamatan={"Tanah Abang": (-6.21, 106.81)},
            analytics={"full_threshold": 0.7, "overflow_threshold": 0.95}, reset=["collection_times"]))
    assert done == ["name: Jakarta -> DKI Jakarta", "timezone: Asia/Jakarta -> Asia/Makassar",
                    "kecamatan Tanah Abang: new -> [-6.21, 106.81]",
                    "analytics collection_times: ['05:30', '14:00'] -> deployment",
                    "analytics full_threshold: 0.75 -> 0.7", "analytics overflow_threshold: deployment -> 0.95"]
    with sessions() as s:
        row = get_city(s, "jakarta")
        assert (row.name, row.timezone, row.centre_lat, row.centre_lon) == ("DKI Jakarta", "Asia/Makassar",
                                                                            -6.2, 106.82)
        assert row.kecamatan == {"Gambir": [-6.176, 106.819], "Menteng": [-6.196, 106.838],
                                 "Tanah Abang": [-6.21, 106.81]}
        assert row.analytics == {"full_threshold": 0.7, "overflow_threshold": 0.95}
        cfg = city_settings(AnalyticsSettings(collection_times=["06:00"]), row)
        assert (cfg.timezone, cfg.collection_times, cfg.full_threshold) == ("Asia/Makassar", ["06:00"], 0.7)
        assert update_city(s, "jakarta", CityChange(name="DKI Jakarta")) == []  # the same value: nothing changes
        with pytest.raises(UnknownCity, match=r"no city 'bandung'.*known: jakarta, makassar"):
            update_city(s, "bandung", CityChange(name="Bandung"))
        with pytest.raises(ValidationError, match="unknown time zone"):
            update_city(s, "jakarta", CityChange(timezone="Asia/Nowhere"))
        with pytest.raises(ValidationError, match="unknown analytics setting"):
            update_city(s, "jakarta", CityChange(analytics={"fill_speed": 1}))
        with pytest.raises(ValueError, match=r"does not override collection_times \(its overrides: full_threshold"):
            update_city(s, "jakarta", CityChange(reset=["collection_times"]))


def _jakarta_in_use(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Jakarta with one of everything that can refer to a city, and Makassar with its own; returns ids."""
    from analytics.alerts import AlertBook
    from api.auth import create_token, revoke_token
    from devices.credentials import issue_credential
    from devices.registry import retire_device

    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    with sessions.begin() as s:
        add_city(s, JAKARTA)
        for dev, city in (("JKT-1", "jakarta"), ("JKT-OLD", "jakarta"), ("MKS-1", "makassar")):
            add_device(s, DeviceIn(id=dev, kind="bin", depth_mm=1000, city_id=city))
        issue_credential(s, "JKT-OLD", t0)
        s.add(CollectionRow(device_id="JKT-OLD", at=t0, level_before=0.9, level_after=0.05))
        s.add(DeviceLatestRow(device_id="JKT-OLD", ts=t0, metrics={"fillingLevel": [0.05, 0]}, derived={}))
        book = AlertBook(s, channels=("mqtt",))
        live, _ = book.raise_("JKT-1", "bin_full", "major", t0, {})
        old, _ = book.raise_("JKT-OLD", "offline", "minor", t0, {})
        book.clear(old.id, t0 + timedelta(hours=1))
        mks, _ = book.raise_("MKS-1", "bin_full", "major", t0, {})
        retire_device(s, "JKT-OLD", t0 + timedelta(hours=2))
        token, _ = create_token(s, "budi", "crew", city="jakarta")
        gone, _ = create_token(s, "old-crew", "crew", city="jakarta")
        revoke_token(s, gone.id)
        s.add(IdempotencyKeyRow(token_id=gone.id, key="k1", method="POST", path="/bins/JKT-1/emptied", status=200,
                                response={}, created_at=t0))
        other, _ = create_token(s, "ani", "crew", city="makassar")
        for city in ("jakarta", "makassar"):
            s.add(RoutePlanRow(day="2026-12-01", city_id=city, vehicle=0, stops={"stops": []}, distance_km=1.0,
                               created_at=t0))
        s.flush()
        return {"live": live.id, "old": old.id, "mks": mks.id, "token": token.id, "gone": gone.id, "other": other.id}


def test_remove_city_refuses_while_anything_refers_to_it(sessions: sessionmaker[Session]) -> None:
    ids = _jakarta_in_use(sessions)
    with sessions() as s, pytest.raises(CityInUse) as refused:
        remove_city(s, "jakarta", purge_history=True)  # never what is in use, even with the history purged
    assert str(refused.value) == (
        "city jakarta still has 1 device (1 active), 1 API token, 1 active alert, 1 retired device, "
        "1 revoked API token, 1 cleared alert and 1 route plan: move each device to another city "
        "(`lorong devices update ID --city OTHER`; `lorong devices list --city jakarta` lists them) or retire it "
        "(`lorong devices retire ID`); revoke its tokens (`lorong api token revoke ID`; `lorong api token list` "
        "shows them); clear its active alerts (crew page, or POST /alerts/{id}/clear); then "
        "`lorong cities remove jakarta --purge-history` deletes its 1 retired device, 1 revoked API token, "
        "1 cleared alert and 1 route plan with it")
    with sessions.begin() as s:  # the operator moves the working bin (its active alert goes with it), revokes
        update_device(s, "JKT-1", DeviceUpdate(city_id="makassar"))
        from api.auth import revoke_token
        revoke_token(s, ids["token"])
    with sessions() as s:
        assert s.get(AlertRow, ids["live"]).city_id == "makassar"  # type: ignore[union-attr]
        assert s.get(AlertRow, ids["old"]).city_id == "jakarta"  # type: ignore[union-attr]  # history stays
        with pytest.raises(CityInUse, match=r"^city jakarta still has 1 retired device, 2 revoked API tokens, "
                                            r"1 cleared alert and 1 route plan: `lorong cities remove jakarta "
                                            r"--purge-history` deletes"):
            remove_city(s, "jakarta")
    with sessions.begin() as s:
        held = remove_city(s, "jakarta", purge_history=True)
    assert held.history() == ["1 retired device", "2 revoked API tokens", "1 cleared alert", "1 route plan"]
    with sessions() as s:
        assert [c.id for c in list_cities(s)] == ["makassar"]
        left = {t.__tablename__: [tuple(r) for r in s.execute(select(*cols))]
                for t, cols in ((DeviceRow, (DeviceRow.id, DeviceRow.city_id)),
                                (AlertRow, (AlertRow.id, AlertRow.city_id)),
                                (ApiTokenRow, (ApiTokenRow.id, ApiTokenRow.city_id)),
                                (RoutePlanRow, (RoutePlanRow.city_id,)),
                                (DeviceCredentialRow, (DeviceCredentialRow.device_id,)),
                                (CollectionRow, (CollectionRow.device_id,)),
                                (DeviceLatestRow, (DeviceLatestRow.device_id,)),
                                (IdempotencyKeyRow, (IdempotencyKeyRow.token_id,)))}
        assert {k: sorted(v) for k, v in left.items()} == {
            "devices": [("JKT-1", "makassar"), ("MKS-1", "makassar")],
            "alerts": sorted([(ids["live"], "makassar"), (ids["mks"], "makassar")]),
            "api_tokens": [(ids["other"], "makassar")], "route_plans": [("makassar",)],
            "device_credentials": [], "collections": [], "device_latest": [], "idempotency_keys": []}
        alive = {ids["live"], ids["mks"]}
        assert set(s.scalars(select(AlertHistoryRow.alert_id))) == alive  # the cleared alert's history went too
        assert set(s.scalars(select(NotificationOutboxRow.alert_id))) == alive
        with pytest.raises(UnknownCity):
            remove_city(s, "jakarta")


def test_cli_edit_and_remove(run_cli: RunCli, sessions: sessionmaker[Session], cli_env: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from devices import cities_cli

    runner = CliRunner()

    def cities(*args: str, **env: str) -> Result:
        return runner.invoke(cities_cli.app, list(args), env={**cli_env, **env})

    assert cities("add", "jakarta", "--name", "Jakarta", "--timezone", "Asia/Jakarta").exit_code == 0
    edit = cities("edit", "jakarta", "--name", "DKI Jakarta", "--centre", "-6.2,106.82",
                  "--analytics", '{"collection_times": ["05:30"], "full_threshold": 0.75}')
    assert edit.exit_code == 0, edit.output
    assert edit.stdout.splitlines() == [
        "changed city jakarta: name: Jakarta -> DKI Jakarta; centre: None -> (-6.2, 106.82); "
        "analytics collection_times: deployment -> ['05:30']; analytics full_threshold: deployment -> 0.75"]
    zone = cities("edit", "jakarta", "--timezone", "Asia/Jayapura", "--reset", "full_threshold")
    assert zone.exit_code == 0, zone.output
    assert zone.stdout.splitlines()[0] == ("changed city jakarta: timezone: Asia/Jakarta -> Asia/Jayapura; "
                                           "analytics full_threshold: 0.75 -> deployment")
    assert "does not answer: when it does, run `lorong storage retention apply`" in zone.stdout  # no InfluxDB here
    with sessions() as s:
        row = get_city(s, "jakarta")
        assert (row.name, row.timezone, row.analytics) == ("DKI Jakarta", "Asia/Jayapura",
                                                           {"collection_times": ["05:30"]})
    for args, message in ((["edit", "bandung", "--name", "B"], "no city 'bandung' in the registry"),
                          (["edit", "jakarta", "--timezone", "Mars/Base"], "city jakarta: timezone: unknown time zone"),
                          (["edit", "jakarta"], "nothing to change"),
                          (["edit", "jakarta", "--centre", "north"], "is not LAT,LON"),
                          (["edit", "jakarta", "--analytics", "[1]"], "must be a JSON object"),
                          (["edit", "jakarta", "--reset", "overflow_threshold"], "does not override"),
                          # the deployment's overflow threshold (0.95) must stay above the city's full threshold
                          (["edit", "jakarta", "--analytics", '{"full_threshold": 0.99}'],
                           "city jakarta: analytics: LORONG_ANALYTICS__OVERFLOW_THRESHOLD (0.95) must be at least"),
                          (["remove", "bandung"], "no city 'bandung'")):
        bad = cities(*args)
        assert (bad.exit_code, bad.stderr.count("\n")) == (2, 1), (args, bad.output)
        assert bad.stderr.startswith("error: ") and message in bad.stderr, (args, bad.stderr)
    # fine for the defaults, not for this deployment's overflow threshold: refused before the job meets it
    bad = cities("edit", "jakarta", "--analytics", '{"full_threshold": 0.92}',
                 LORONG_ANALYTICS__OVERFLOW_THRESHOLD="0.9")
    assert (bad.exit_code, bad.stderr.count("\n")) == (2, 1), bad.output
    assert bad.stderr.startswith("error: city jakarta as changed does not fit the deployment's analytics "
                                 "settings: LORONG_ANALYTICS__OVERFLOW_THRESHOLD (0.9) must be at least "
                                 "LORONG_ANALYTICS__FULL_THRESHOLD (0.92)"), bad.stderr
    with sessions() as s:
        assert get_city(s, "jakarta").analytics == {"collection_times": ["05:30"]}  # the refused edits changed nothing

    assert run_cli("add", "JKT-1", "--kind", "bin", "--depth-mm", "1000", "--city", "jakarta").exit_code == 0
    busy = cities("remove", "jakarta")
    assert (busy.exit_code, busy.stderr.count("\n")) == (1, 1), busy.output
    assert busy.stderr.startswith("error: city jakarta still has 1 device (1 active): move each device")
    own = cities("remove", "makassar")  # the deployment's own city (LORONG_CITY__ID)
    assert own.exit_code == 1 and "LORONG_CITY__ID" in own.stderr
    chat = cities("remove", "jakarta", LORONG_NOTIFY__TELEGRAM_CHATS='[{"name": "jkt-crew", "chat_id": -1, '
                                                                     '"city": "jakarta"}]')
    assert chat.exit_code == 1 and "Telegram chat(s) jkt-crew" in chat.stderr
    assert run_cli("update", "JKT-1", "--city", "makassar").exit_code == 0
    gone = cities("remove", "jakarta")
    assert gone.exit_code == 0, gone.output
    assert gone.stdout.splitlines()[0] == "removed city jakarta"
    with sessions() as s:
        assert [c.id for c in list_cities(s)] == ["makassar"]
        assert s.get(DeviceRow, "JKT-1").city_id == "makassar"  # type: ignore[union-attr]
