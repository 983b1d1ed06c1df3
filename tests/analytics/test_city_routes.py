"""``lorong analytics route`` per city (issue 15): a plan takes its city's bins, rounds and "today" in
its time zone, replaces only that city's plan of the day, and a registry of several cities needs
``--city``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics.cli import app
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.storage.tables import CityRow, DeviceLatestRow, RoutePlanRow

NOW = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)
"""00:30 WITA on Tuesday 3 March in Makassar, still 23:30 WIB on Monday 2 March in Jakarta."""
BETWEEN = datetime(2026, 3, 2, 22, 15, tzinfo=UTC)
"""After Makassar's next round starts (06:00 WITA = 22:00 UTC), before Jakarta's (05:30 WIB = 22:30 UTC)."""


def two_cities(sessions: Any) -> None:
    """Jakarta (rounds at 05:30) beside the migrated Makassar (06:00); in each a full bin, a bin full at
    :data:`BETWEEN` and a half-full one."""
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta",
                           analytics={"collection_times": ["05:30"]}))
        for prefix, city, (lat, lon) in (("MKS", "makassar", (-5.14, 119.42)), ("JKT", "jakarta", (-6.18, 106.82))):
            for n, level, full_at in ((1, 0.9, None), (2, 0.6, BETWEEN), (3, 0.4, None)):
                dev = f"{prefix}-BIN-{n}"
                add_device(s, DeviceIn(id=dev, kind="bin", depth_mm=1000, city_id=city, lat=lat + n * 0.001,
                                       lon=lon, capacity_l=240))
                s.add(DeviceLatestRow(device_id=dev, ts=NOW, metrics={"fillingLevel": [level, 0]},
                                      derived={"full_at": full_at.isoformat() if full_at else None}))


def route(city: str | None, depot: str) -> Any:
    """Run ``lorong analytics route`` as of :data:`NOW`."""
    args = ["route", "--depot", depot, "--vehicles", "1", "--capacity", "1000", "--now", NOW.isoformat(),
            "--time-limit", "0.5", *(["--city", city] if city else [])]
    return CliRunner().invoke(app, args)


def plans(sessions: Any) -> list[tuple[str | None, str, int, list[str]]]:
    """Saved plans as ``(city, day, vehicle, stop ids)``."""
    with sessions() as s:
        return sorted((p.city_id, p.day, p.vehicle, [st["device_id"] for st in p.stops["stops"]])
                      for p in s.scalars(select(RoutePlanRow)))


def test_route_per_city_its_bins_rounds_and_day(db_url: str, sessions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    two_cities(sessions)
    without = route(None, "-5.14,119.42")
    assert without.exit_code == 2
    assert "error: name the city: --city jakarta or makassar" in without.output
    assert plans(sessions) == []
    mks = route("makassar", "-5.14,119.42")
    jkt = route("jakarta", "-6.18,106.82")
    assert mks.exit_code == 0 and jkt.exit_code == 0, mks.output + jkt.output
    # both plans are for Tuesday's rounds: Makassar is already on Tuesday, and Jakarta's plan, made at
    # 23:30 WIB after Monday's round, is for Tuesday's 05:30 one (its round day); JKT-BIN-2 fills before
    # Jakarta's 05:30 round starts, MKS-BIN-2 only
    # after Makassar's 06:00 round has started (not planned for it)
    assert mks.output.splitlines()[0].startswith("makassar 2026-03-03: 1 bin, 1 route, ")
    assert jkt.output.splitlines()[0].startswith("jakarta 2026-03-03: 2 bins, 1 route, ")
    assert plans(sessions) == [("jakarta", "2026-03-03", 0, ["JKT-BIN-1", "JKT-BIN-2"]),
                               ("makassar", "2026-03-03", 0, ["MKS-BIN-1"])]
    # planning Makassar again replaces Makassar's plan of the day only
    with sessions.begin() as s:
        s.get(DeviceLatestRow, "MKS-BIN-3").metrics = {"fillingLevel": [0.95, 0]}
    assert route("makassar", "-5.14,119.42").exit_code == 0
    assert plans(sessions) == [("jakarta", "2026-03-03", 0, ["JKT-BIN-1", "JKT-BIN-2"]),
                               ("makassar", "2026-03-03", 0, sorted(plans(sessions)[1][3]))]
    assert set(plans(sessions)[1][3]) == {"MKS-BIN-1", "MKS-BIN-3"}
    again = route("Jakarta", "-6.18,106.82")  # the id's case does not matter, as in the API's ?city=
    assert again.exit_code == 0 and again.output.splitlines()[0].startswith("jakarta 2026-03-03: 2 bins"), again.output
    unknown = route("surabaya", "-7.25,112.75")
    assert unknown.exit_code == 2 and "no city 'surabaya' in the registry (known: jakarta, makassar)" in unknown.output


def test_one_city_registry_plans_without_city(db_url: str, sessions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="MKS-BIN-1", kind="bin", depth_mm=1000, lat=-5.14, lon=119.42))
        s.add(DeviceLatestRow(device_id="MKS-BIN-1", ts=NOW, metrics={"fillingLevel": [0.9, 0]}, derived={}))
    result = route(None, "-5.13,119.42")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("2026-03-03: 1 bin, 1 route, ")  # as before cities
    assert plans(sessions) == [("makassar", "2026-03-03", 0, ["MKS-BIN-1"])]  # 00:30 WITA: Tuesday's plan



def test_a_depot_far_from_the_city_is_refused_and_nothing_saved(db_url: str, sessions: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Makassar's depot given for Jakarta (about 1,400 km away) planned a 2,806 km route and replaced
    Jakarta's saved plan without a word."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    two_cities(sessions)
    with sessions.begin() as s:
        s.get(CityRow, "jakarta").centre_lat, s.get(CityRow, "jakarta").centre_lon = -6.1754, 106.8272
    assert route("jakarta", "-6.18,106.83").exit_code == 0
    saved = plans(sessions)
    for dry in ([], ["--dry-run"]):
        far = CliRunner().invoke(app, ["route", "--city", "jakarta", "--depot", "-5.135,119.42", "--vehicles", "1",
                                       "--capacity", "1000", "--now", NOW.isoformat(), *dry])
        assert far.exit_code == 2, far.output
        assert far.stderr == ("error: the depot -5.135,119.42 is 1398 km from the centre of jakarta "
                              "(-6.1754,106.8272), more than the 100 km a depot may be from its city: "
                              "is it another city's depot?\n")
        assert far.stdout == ""
        assert plans(sessions) == saved
    # just inside the limit (0.89 degrees of latitude, 99 km) is still planned
    assert route("jakarta", "-7.065,106.8272").exit_code == 0


def test_without_a_centre_the_depot_is_checked_against_the_bins(db_url: str, sessions: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The migrated city of a registry made without devices has no centre: the mean position of its
    bins stands for it (as migration 0008 takes it)."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    with sessions.begin() as s:
        assert s.get(CityRow, "makassar").centre_lat is None
        add_device(s, DeviceIn(id="MKS-BIN-1", kind="bin", depth_mm=1000, lat=-5.14, lon=119.42))
        s.add(DeviceLatestRow(device_id="MKS-BIN-1", ts=NOW, metrics={"fillingLevel": [0.9, 0]}, derived={}))
    far = route(None, "-6.18,106.83")
    assert far.exit_code == 2
    assert far.stderr.startswith("error: the depot -6.18,106.83 is 1398 km from the mean position of the bins of "
                                 "makassar (-5.1400,119.4200), more than the 100 km")
    assert plans(sessions) == []
