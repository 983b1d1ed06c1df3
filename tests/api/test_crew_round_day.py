"""A route plan made in the evening is for the next round (its ``day``), and only emptyings after the
plan was made tick its stops off (a new user's report, item 1): real registry, the real
``lorong analytics route`` command and the real API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from analytics.cli import app
from analytics.forecast import round_day
from devices.cities import CityIn, add_city
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.tables import CollectionRow, RoutePlanRow
from tests.api.conftest import bearer, serve
from tests.api.seed import add_bin, set_latest

pytestmark = pytest.mark.integration


def test_round_day_of_an_evening_plan_is_the_next_morning() -> None:
    daily, wita = ["06:00"], "Asia/Makassar"
    at = lambda h, m: datetime(2026, 12, 6, h, m, tzinfo=ZoneInfo(wita))  # noqa: E731
    assert round_day(at(23, 45), daily, range(7), wita) == "2026-12-07"  # the reported case
    assert round_day(at(0, 0) + timedelta(days=1), daily, range(7), wita) == "2026-12-07"
    assert round_day(at(5, 0), daily, range(7), wita) == "2026-12-06"  # before the round
    assert round_day(at(10, 0), daily, range(7), wita) == "2026-12-06"  # round under way (ends 14:00)
    assert round_day(at(14, 1), daily, range(7), wita) == "2026-12-07"  # round over
    # no round on Monday 2026-12-07: a Sunday-evening plan is for Tuesday
    assert round_day(at(23, 45), daily, [1, 2, 3, 4, 5, 6], wita) == "2026-12-08"


def _evening_zone(now: datetime) -> str:
    """A whole-hour zone where ``now`` is between 10:00 and 22:00 local: a 00:00 round is over there."""
    for offset in range(-12, 15):
        zone = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 22:
            return zone
    raise AssertionError("some whole-hour zone is between 10:00 and 22:00")


def test_an_evening_plan_is_for_the_next_round_and_earlier_pickups_do_not_count(
        settings: Settings, sessions: sessionmaker[Session], db_url: str, tokens: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    zone = _evening_zone(now)
    local = now.astimezone(ZoneInfo(zone))
    with sessions.begin() as s:
        add_city(s, CityIn(id="dusk", name="Dusk", timezone=zone, analytics={"collection_times": ["00:00"]}))
        for n in (1, 2):
            add_bin(s, f"DSK-BIN-{n}", city_id="dusk", lat=-5.13 + n * 0.002, capacity_l=240)
            set_latest(s, f"DSK-BIN-{n}", now - timedelta(minutes=5), fillingLevel=0.9)
            # this morning's round emptied both, before tonight's plan
            s.add(CollectionRow(device_id=f"DSK-BIN-{n}", at=now - timedelta(hours=2), level_before=0.95,
                                level_after=0.05, source="sensor"))
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["route", "--city", "dusk", "--depot", "-5.13,119.41", "--vehicles", "1",
                                      "--capacity", "1000", "--time-limit", "0.3"])
    assert result.exit_code == 0, result.output
    tomorrow = (local.date() + timedelta(days=1)).isoformat()
    with sessions() as s:
        assert [p.day for p in s.scalars(select(RoutePlanRow))] == [tomorrow]
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            before = client.get("/routes", headers=bearer(tokens["crew"])).json()
            done = client.post("/bins/DSK-BIN-2/emptied", headers=bearer(tokens["crew"]))
            after = client.get("/routes", params={"city": "dusk"}, headers=bearer(tokens["crew"])).json()
    finally:
        srv.stop()
    # shown by default from now on (it is the plan of the round in effect), nothing done yet
    assert [(r["city_id"], r["day"]) for r in before] == [("dusk", tomorrow)]
    assert sorted((st["id"], st["emptiedAt"]) for st in before[0]["stops"]) == [("DSK-BIN-1", None),
                                                                                 ("DSK-BIN-2", None)]
    assert done.status_code == 200
    emptied = {st["id"]: st["emptiedAt"] for st in after[0]["stops"]}
    assert emptied["DSK-BIN-1"] is None
    assert datetime.fromisoformat(emptied["DSK-BIN-2"].replace("Z", "+00:00")) >= now.astimezone(UTC)
