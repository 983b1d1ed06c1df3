"""``GET /routes`` per city (issue 15): plans made by ``lorong analytics route --city``, served by the
real API; a token scoped to a city sees its city's routes only, "today" is each city's own date."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from analytics.cli import app
from api.auth import create_token
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.tables import DeviceLatestRow, RoutePlanRow
from tests.api.conftest import bearer, serve
from tests.api.seed import add_route

pytestmark = pytest.mark.integration


def test_routes_per_city_with_city_tokens(settings: Settings, sessions: sessionmaker[Session], db_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta"))
        for prefix, city, (lat, lon), kec in (("MKS", "makassar", (-5.14, 119.42), "Wajo"),
                                               ("JKT", "jakarta", (-6.18, 106.82), "Gambir")):
            for n in (1, 2):
                dev = f"{prefix}-BIN-{n}"
                add_device(s, DeviceIn(id=dev, kind="bin", depth_mm=1000, city_id=city, kecamatan=kec,
                                       lat=lat + n * 0.002, lon=lon, capacity_l=240))
                s.add(DeviceLatestRow(device_id=dev, ts=now, metrics={"fillingLevel": [0.9, 0]}, derived={}))
        tokens = {"mks": create_token(s, "crew-mks", "crew", city="makassar")[1],
                  "jkt": create_token(s, "crew-jkt", "crew", city="jakarta")[1],
                  "province": create_token(s, "province", "officer")[1]}
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    for city, depot in (("makassar", "-5.14,119.42"), ("jakarta", "-6.18,106.82")):
        result = CliRunner().invoke(app, ["route", "--city", city, "--depot", depot, "--vehicles", "1",
                                          "--capacity", "1000", "--time-limit", "0.5"])
        assert result.exit_code == 0, result.output
    srv = serve(settings)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            def get(who: str, **params: Any) -> httpx.Response:
                return client.get("/routes", params=params, headers=bearer(tokens[who]))

            mks, jkt, every = get("mks").json(), get("jkt").json(), get("province").json()
            asked = get("province", city="jakarta").json()
            other = get("mks", city="jakarta")
            # a city filter compares without case, as on /bins, /alerts and /export (issue 14 item 28)
            asked_upper, own_upper = get("province", city="Jakarta"), get("mks", city="MAKASSAR")
            unknown = get("province", city="surabaya")
    finally:
        srv.stop()

    def seen(routes: list[dict[str, Any]]) -> list[tuple[str, int, list[str]]]:
        return [(r["city_id"], r["vehicle"], [st["id"] for st in r["stops"]]) for r in routes]

    # each city's plan has vehicle 0, on its own day; a city's token sees its own only
    assert seen(mks) == [("makassar", 0, sorted(seen(mks)[0][2]))] and set(seen(mks)[0][2]) == {"MKS-BIN-1",
                                                                                                  "MKS-BIN-2"}
    assert seen(jkt) == [("jakarta", 0, seen(jkt)[0][2])] and set(seen(jkt)[0][2]) == {"JKT-BIN-1", "JKT-BIN-2"}
    assert mks[0]["stops"][0]["kecamatan"] == "Wajo" and jkt[0]["stops"][0]["kecamatan"] == "Gambir"
    assert seen(every) == seen(jkt) + seen(mks)  # by city, then vehicle
    assert seen(asked) == seen(jkt)
    assert asked_upper.status_code == 200 and seen(asked_upper.json()) == seen(jkt), asked_upper.text
    assert own_upper.status_code == 200 and seen(own_upper.json()) == seen(mks), own_upper.text
    with sessions() as s:
        days = {p.city_id: p.day for p in s.query(RoutePlanRow)}
    assert {r["city_id"]: r["day"] for r in every} == days
    assert other.status_code == 403 and other.json()["detail"] == "a token of makassar sees the routes of makassar only"
    assert unknown.status_code == 422 and unknown.json()["detail"] == (
        "query parameter 'city': no city 'surabaya' in the registry; known cities: jakarta, makassar")


def test_a_plan_saved_before_plans_had_a_city(settings: Settings, sessions: sessionmaker[Session]) -> None:
    # migration 0009 leaves plans of a registry that already had several cities without a city: a city's
    # token sees such a plan when every stop is its city's bin, as it did before
    now = utcnow()
    day = now.astimezone(ZoneInfo("Asia/Makassar")).date().isoformat()
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta"))
        add_device(s, DeviceIn(id="MKS-BIN-1", kind="bin", depth_mm=1000, city_id="makassar"))
        add_device(s, DeviceIn(id="JKT-BIN-1", kind="bin", depth_mm=1000, city_id="jakarta"))
        add_route(s, day, 0, ["MKS-BIN-1"], 1.0, now)
        add_route(s, day, 1, ["MKS-BIN-1", "JKT-BIN-1"], 1.0, now)
        mks = create_token(s, "crew-mks", "crew", city="makassar")[1]
        jkt = create_token(s, "crew-jkt", "crew", city="jakarta")[1]
    srv = serve(settings)
    try:
        got = {who: [(r["city_id"], r["vehicle"]) for r in httpx.get(
            f"{srv.url}/routes", headers=bearer(tok), timeout=10).json()] for who, tok in (("mks", mks), ("jkt", jkt))}
    finally:
        srv.stop()
    assert got == {"mks": [(None, 0)], "jkt": []}
