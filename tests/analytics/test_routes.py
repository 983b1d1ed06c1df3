"""Collection routes: haversine distances, a CVRP instance whose optimum is checked by hand, and
``lorong analytics route`` choosing full / soon-full bins and saving today's plan."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics.cli import app
from analytics.routes import EARTH_RADIUS_M, Stop, TruckTooSmall, haversine_m, select_stops, solve
from devices.registry import DeviceIn, add_device
from lorong.core.settings import AnalyticsSettings
from lorong.storage.tables import CollectionRow, DeviceLatestRow, RoutePlanRow

DEG_M = EARTH_RADIUS_M * math.pi / 180  # one degree of longitude on the equator, 111,195 m


def test_haversine() -> None:
    assert haversine_m((0.0, 0.0), (0.0, 0.01)) == pytest.approx(0.01 * DEG_M, abs=1e-6)
    assert haversine_m((0.0, 0.0), (0.01, 0.0)) == pytest.approx(0.01 * DEG_M, abs=1e-6)
    assert haversine_m((0.0, 0.0), (90.0, 0.0)) == pytest.approx(math.pi / 2 * EARTH_RADIUS_M, abs=1e-6)
    assert haversine_m((-5.0, 119.0), (5.0, -61.0)) == pytest.approx(math.pi * EARTH_RADIUS_M, abs=1e-3)  # antipodes


# Bins on the equator, east and west of the depot at (0, 0), 100 L each.
EAST = [Stop(f"E{i}", 0.0, 0.01 * i, 100) for i in (1, 2, 3)]
WEST = [Stop(f"W{i}", 0.0, -0.01 * i, 100) for i in (1, 2)]


def test_cvrp_known_optimum() -> None:
    # Any plan must reach 0.03 deg east and 0.02 deg west and come back: at least 0.10 deg.
    # One 300 L truck cannot take all five bins (500 L); two can, one per side, each driving out
    # to its farthest bin and back: 0.06 + 0.04 deg. Any other split puts a bin of one side on
    # the other side's truck, which then drives to both sides (more than 0.10 deg in total).
    plan = solve((0.0, 0.0), [*WEST, *EAST], vehicles=2, capacity_l=300, time_limit_s=1.0)
    assert plan.dropped == []
    sides = sorted(sorted(s.device_id for s in r.stops) for r in plan.routes)
    assert sides == [["E1", "E2", "E3"], ["W1", "W2"]]
    for r in plan.routes:
        ids = [s.device_id for s in r.stops]
        assert ids in (sorted(ids), sorted(ids, reverse=True))  # out and back in order
        assert r.load_l == 100 * len(ids)
    km = {r.stops[0].device_id[0]: r.distance_km for r in plan.routes}
    assert km["E"] == pytest.approx(0.06 * DEG_M / 1000, abs=1e-9)
    assert km["W"] == pytest.approx(0.04 * DEG_M / 1000, abs=1e-9)
    assert plan.distance_km == pytest.approx(11.1195, abs=1e-4)


def test_cvrp_one_big_truck_and_too_little_room() -> None:
    plan = solve((0.0, 0.0), [*WEST, *EAST], vehicles=1, capacity_l=1000, time_limit_s=0.5)
    assert len(plan.routes) == 1 and plan.distance_km == pytest.approx(0.10 * DEG_M / 1000, abs=1e-9)
    # room for two bins: three are left out and reported
    plan = solve((0.0, 0.0), [*WEST, *EAST], vehicles=1, capacity_l=250, time_limit_s=0.5)
    assert len(plan.routes[0].stops) == 2 and len(plan.dropped) == 3
    assert plan.distance_km == pytest.approx(0.04 * DEG_M / 1000, abs=1e-9)
    assert solve((0.0, 0.0), [], 1, 100).routes == []
    with pytest.raises(ValueError, match="at least one vehicle"):
        solve((0.0, 0.0), EAST, 0, 100)


def test_cvrp_local_optimum_is_the_known_optimum_and_repeats() -> None:
    # stopping at the first local optimum still finds the hand-checked plan above, and the same
    # stops give the same routes every time (the simulated city's closed loop relies on it)
    plans = [solve((0.0, 0.0), [*WEST, *EAST], vehicles=2, capacity_l=300, time_limit_s=60, local_optimum=True)
             for _ in range(3)]
    routes = [[[s.device_id for s in r.stops] for r in p.routes] for p in plans]
    assert routes[0] == routes[1] == routes[2]
    assert sorted(sorted(r) for r in routes[0]) == [["E1", "E2", "E3"], ["W1", "W2"]]
    assert plans[0].distance_km == pytest.approx(11.1195, abs=1e-4)


NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 WITA; next round Tuesday 06:00 WITA


def test_route_cli_selects_full_and_soon_full_bins(db_url: str, sessions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    rows = [  # id, lon, fillingLevel, full_at, capacity_l
        ("FULL-E1", 0.01, 0.85, None, 240),
        ("SOON-E2", 0.02, 0.60, NOW + timedelta(hours=5), 240),    # full before the 06:00 round
        ("LATE-E3", 0.03, 0.50, NOW + timedelta(hours=30), 240),   # after it: not today
        ("FULL-W1", -0.01, 1.00, None, None),                      # no capacity: 660 L assumed
        ("HALF-W2", -0.02, 0.40, None, 240),
    ]
    with sessions.begin() as s:
        for dev, lon, level, full_at, cap in rows:
            add_device(s, DeviceIn(id=dev, kind="bin", lat=0.0, lon=lon, capacity_l=cap, depth_mm=1000))
            s.add(DeviceLatestRow(device_id=dev, ts=NOW, metrics={"fillingLevel": [level, 0]},
                                  derived={"full_at": full_at.isoformat() if full_at else None}))
    args = ["route", "--depot", "0,0", "--vehicles", "2", "--capacity", "1000", "--now", NOW.isoformat(),
            "--time-limit", "0.5"]
    for _ in range(2):  # planning twice replaces the day's plan
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    print(result.output)
    assert result.output.splitlines()[0].startswith("2026-03-02: 3 bins,")
    with sessions() as s:
        plans = s.scalars(select(RoutePlanRow).order_by(RoutePlanRow.vehicle)).all()
    assert {p.day for p in plans} == {"2026-03-02"}
    stops = {st["device_id"]: st for p in plans for st in p.stops["stops"]}
    assert set(stops) == {"FULL-E1", "SOON-E2", "FULL-W1"}
    assert stops["FULL-E1"]["demand_l"] == 204 and stops["SOON-E2"]["demand_l"] == 144
    assert stops["FULL-W1"]["demand_l"] == 660
    # 348 L east + 660 L west > 1000 L: two trucks, one per side (0.04 + 0.02 deg out and back)
    assert len(plans) == 2
    assert sum(p.distance_km for p in plans) == pytest.approx(0.06 * DEG_M / 1000, abs=1e-3)


def _seed_bins(sessions: Any) -> None:
    """Two full 240 L bins east of the depot: 204 L and 240 L of waste."""
    with sessions.begin() as s:
        for dev, lon, level in (("FULL-E1", 0.01, 0.85), ("FULL-E2", 0.02, 1.0)):
            add_device(s, DeviceIn(id=dev, kind="bin", lat=0.0, lon=lon, capacity_l=240, depth_mm=1000))
            s.add(DeviceLatestRow(device_id=dev, ts=NOW, metrics={"fillingLevel": [level, 0]}, derived={}))


def _route(*extra: str) -> Any:
    return CliRunner().invoke(app, ["route", "--depot", "0,0", "--now", NOW.isoformat(), "--time-limit", "0.3",
                                    *extra])


def test_solve_refuses_a_truck_smaller_than_a_bin() -> None:
    with pytest.raises(TruckTooSmall, match="bin E2 holds 150 L, more than a truck's capacity of 120 L") as exc:
        solve((0.0, 0.0), [Stop("E1", 0.0, 0.01, 100), Stop("E2", 0.0, 0.02, 150)], 3, 120)
    assert exc.value.stop.device_id == "E2" and exc.value.capacity_l == 120


def test_route_cli_small_truck_keeps_the_saved_plan(db_url: str, sessions: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    _seed_bins(sessions)
    good = _route("--vehicles", "2", "--capacity", "10000")
    assert good.exit_code == 0, good.output
    assert good.output.splitlines()[:2] == ["2026-03-02: 2 bins, 1 route, 4.45 km",
                                            "vehicle 0: 2 stops, 444 L of 10000 L, 4.45 km"]
    bad = _route("--vehicles", "1", "--capacity", "100")
    assert bad.exit_code == 2
    assert bad.stderr == ("error: bin FULL-E2 holds 240 L, more than a truck's capacity of 100 L: "
                          "use --capacity 240 or more\n")
    assert bad.stdout == ""
    with sessions() as s:
        plans = s.scalars(select(RoutePlanRow)).all()
    assert [(p.day, p.vehicle, [st["device_id"] for st in p.stops["stops"]]) for p in plans] in (
        [("2026-03-02", 0, ["FULL-E1", "FULL-E2"])], [("2026-03-02", 0, ["FULL-E2", "FULL-E1"])])


def test_route_cli_empty_plan_never_replaces_a_saved_one(db_url: str, sessions: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    _seed_bins(sessions)
    assert _route("--vehicles", "1", "--capacity", "240").exit_code == 0
    with sessions.begin() as s:  # the bins were emptied: nothing left to collect
        for row in s.scalars(select(DeviceLatestRow)):
            row.metrics = {"fillingLevel": [0.05, 0]}
    again = _route("--vehicles", "1", "--capacity", "240")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == ["2026-03-02: 0 bins, 0 routes, 0.00 km",
                                         "nothing planned: the saved plan for 2026-03-02 (1 route) is kept"]
    with sessions() as s:
        assert len(s.scalars(select(RoutePlanRow)).all()) == 1



@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00+08:00", "2026-03-02T10:00"])
def test_route_cli_bad_now_is_one_line(bad: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    result = _route("--vehicles", "1", "--capacity", "100", "--now", bad)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: --now ")
    assert "Traceback" not in result.output


def test_soon_full_means_before_the_round_reaches_it_not_before_it_starts(sessions: Any) -> None:
    """A bin full an hour after tomorrow's round starts was left out: its truck comes hours later,
    and it overflowed until then (the closed-loop truck policy measured it)."""
    cfg = AnalyticsSettings()  # rounds at 06:00 WITA every day
    at = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # Tuesday 06:00 WITA, planning today's round
    with sessions.begin() as s:
        for dev, lvl, hours in (("LATE", 0.5, 25.0), ("LATER", 0.4, 30.0)):
            add_device(s, DeviceIn(id=dev, kind="bin", lat=0.0, lon=0.01, capacity_l=240, depth_mm=1000))
            s.add(DeviceLatestRow(device_id=dev, ts=at, metrics={"fillingLevel": [lvl, 0]},
                                  derived={"full_at": (at + timedelta(hours=hours)).isoformat()}))
    # LATE is full at 07:00 tomorrow, an hour after the round starts: without pickups known it
    # waits for tomorrow's round (06:00)
    assert [st.device_id for st in select_stops(sessions(), cfg, at)] == []
    # the round usually reaches its last bin at 10:40 WITA: LATE would overflow before then, LATER
    # (full at 12:00) would not
    with sessions.begin() as s:
        for d in (1, 2):
            s.add(CollectionRow(device_id="LATER", at=datetime(2026, 3, d, 2, 40, tzinfo=UTC), level_before=0.8,
                                level_after=0.0))
    assert [st.device_id for st in select_stops(sessions(), cfg, at)] == ["LATE"]


def test_route_cli_dry_run_prints_the_plan_and_saves_nothing(db_url: str, sessions: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 29: ``analytics route`` replaced today's saved plan with no way to look first."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    _seed_bins(sessions)
    assert _route("--vehicles", "1", "--capacity", "10000").exit_code == 0
    with sessions() as s:
        saved = [(p.id, p.vehicle, p.stops, p.created_at) for p in s.scalars(select(RoutePlanRow))]
    dry = _route("--vehicles", "2", "--capacity", "240", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0] == "2026-03-02: 2 bins, 2 routes, 4.45 km" or lines[0].startswith("2026-03-02: 2 bins, 2 routes")
    assert sum(1 for x in lines if x.startswith("vehicle ")) == 2
    assert lines[-1] == "dry run: nothing saved; the saved plan for 2026-03-02 (1 route) is unchanged"
    with sessions() as s:
        assert [(p.id, p.vehicle, p.stops, p.created_at) for p in s.scalars(select(RoutePlanRow))] == saved


def test_more_trucks_than_stops_uses_one_per_stop() -> None:
    """`--vehicles 100000` on a few bins took 23 GB in the solver's model before it was killed."""
    stops = [Stop(f"B{k}", 0.0, 0.01 * (k + 1), 100, 0.9) for k in range(3)]
    plan = solve((0.0, 0.0), stops, 100_000, 1000, 0.5)
    assert sum(len(r.stops) for r in plan.routes) == 3 and len(plan.routes) <= 3 and not plan.dropped


def test_route_cli_warns_when_every_reading_is_old(db_url: str, sessions: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan made while the ingester (or InfluxDB) is down uses the levels as they were: it says so.
    The newest reading of the city's bins is 6 h old, far past ``offline_factor`` (3) report intervals
    (10 min): a plan, with a warning on stderr; with a reading 10 minutes old, no warning."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    _seed_bins(sessions)
    with sessions.begin() as s:
        for row in s.scalars(select(DeviceLatestRow)):
            row.ts = NOW - timedelta(hours=6)
    old = _route("--vehicles", "1", "--capacity", "10000", "--dry-run")
    assert old.exit_code == 0, old.output
    assert old.stderr.splitlines() == [
        "warning: the newest reading of these bins is 6.0 h old (2026-03-02 04:00 WITA): the plan uses the levels "
        "of then; are the ingester and InfluxDB running?"]
    assert old.stdout.splitlines()[0].startswith("2026-03-02: 2 bins, 1 route")
    with sessions.begin() as s:
        s.get(DeviceLatestRow, "FULL-E2").ts = NOW - timedelta(minutes=10)
    fresh = _route("--vehicles", "1", "--capacity", "10000", "--dry-run")
    assert fresh.exit_code == 0 and fresh.stderr == ""


def test_route_cli_says_when_the_job_has_seen_no_reading(db_url: str, sessions: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Bins registered (a scenario loaded) but the analytics job never ran: "0 bins" with nothing on
    stderr read as "nothing to collect"; one warning line says why the plan is empty."""
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    with sessions.begin() as s:
        for dev in ("NEW-1", "NEW-2"):
            add_device(s, DeviceIn(id=dev, kind="bin", lat=0.0, lon=0.01, capacity_l=240, depth_mm=1000))
    result = _route("--vehicles", "1", "--capacity", "1000")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: the analytics job has seen no reading of these 2 bins yet: nothing to plan from; run "
        "`lorong analytics run-once` (or `lorong analytics schedule`) first"]


def test_printed_stops_line_up_whatever_the_id_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    """``lorong analytics route`` printed each stop as it came: a DevEUI (16 characters) beside an
    ``MKS-BIN-0001`` pushed its coordinates and fill 4 columns right, so a crew list read ragged. The
    stops of a plan line up: coordinates, fill and litres each start in one column."""
    from analytics.cli import _print_routes
    from analytics.routes import Plan, Route

    stops = [Stop("24E124BB00000014", -5.14128, 119.41103, 262, 0.4),
             Stop("MKS-BIN-0001", -5.16017, 119.41078, 235, 0.35), Stop("MKS-BIN-0002", -5.1, 119.4, 1000, 1.0)]
    _print_routes(Plan([Route(0, stops, 1497, 12.5)]), 6000)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "vehicle 0: 3 stops, 1497 L of 6000 L, 12.50 km"
    assert lines[1:] == ["    1. 24E124BB00000014  -5.14128,119.41103  fill  40%   262 L",
                         "    2. MKS-BIN-0001      -5.16017,119.41078  fill  35%   235 L",
                         "    3. MKS-BIN-0002      -5.10000,119.40000  fill 100%  1000 L"]
