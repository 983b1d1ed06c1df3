"""``/routes``: today's collection routes (WITA calendar day) from ``route_plans``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.routes.collection import stop_ids, today_wita
from lorong.core.model import utcnow
from tests.api.seed import add_route, fleet

pytestmark = pytest.mark.integration


def test_today_is_a_makassar_day() -> None:
    assert today_wita(datetime(2026, 11, 28, 15, 59, tzinfo=UTC)) == "2026-11-28"  # 23:59 WITA
    assert today_wita(datetime(2026, 11, 28, 16, 0, tzinfo=UTC)) == "2026-11-29"  # 00:00 WITA


def test_stop_shapes() -> None:
    assert stop_ids(["A", "B"]) == ["A", "B"]
    assert stop_ids({"stops": [{"device_id": "A"}, {"id": "B"}, {"x": 1}, 7]}) == ["A", "B"]
    assert stop_ids({"device_ids": ["C"]}) == ["C"]
    assert stop_ids({"nothing": 1}) == [] and stop_ids(None) == []


def test_routes_of_today_and_of_a_day(client: httpx.Client, sessions: sessionmaker[Session],
                                      auth: Callable[[str], dict[str, str]]) -> None:
    now = utcnow()
    fleet(sessions, now)
    today = today_wita(now)
    with sessions.begin() as s:
        add_route(s, today, 2, {"stops": [{"device_id": "MKS-BIN-0003", "lat": -5.11, "lon": 119.43,
                                           "fillingLevel": 0.81, "demand_l": 486.0}],
                                "load_l": 486.0, "capacity_l": 6000, "depot": [-5.135, 119.47]}, 4.5, now)
        add_route(s, today, 1, ["MKS-BIN-0001", "MKS-BIN-0002", "GONE-1"], 12.25, now)
        add_route(s, "2026-01-02", 1, ["MKS-BIN-0004"], 3.0, now)
    routes = client.get("/routes", headers=auth("crew")).json()
    assert [(r["vehicle"], r["day"], r["distance_km"]) for r in routes] == [(1, today, 12.25), (2, today, 4.5)]
    stops = routes[0]["stops"]
    assert [(s["order"], s["id"], s["fillingLevel"]) for s in stops] == [
        (1, "MKS-BIN-0001", 0.94), (2, "MKS-BIN-0002", 0.55), (3, "GONE-1", None)]
    assert stops[0]["street"] == "Jl. Somba Opu" and stops[0]["lat"] == -5.13 and stops[2]["lat"] is None
    assert routes[0]["load_l"] is None and stops[0]["demand_l"] is None  # a bare list of ids
    second = routes[1]
    assert (second["load_l"], second["capacity_l"], second["depot"]) == (486.0, 6000.0, [-5.135, 119.47])
    assert second["stops"][0]["demand_l"] == 486.0
    assert [r["vehicle"] for r in client.get("/routes?vehicle=2", headers=auth("crew")).json()] == [2]
    old = client.get("/routes?day=2026-01-02", headers=auth("officer")).json()
    assert [s["id"] for s in old[0]["stops"]] == ["MKS-BIN-0004"]
    assert client.get("/routes?day=2026-02-30", headers=auth("officer")).status_code == 422
    assert client.get("/routes?day=yesterday", headers=auth("officer")).status_code == 422
    assert client.get("/routes?day=2025-01-01", headers=auth("officer")).json() == []
