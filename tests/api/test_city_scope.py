"""A token scoped to a city never sees another city: every route of the app, called by a Makassar
token with Jakarta's ids and bodies, answers without a trace of Jakarta (404 for its devices,
alerts and tokens, 403 for writing into it); an unscoped token sees both cities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.routing import APIRoute
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook
from api.auth import create_token
from api.main import ROUTERS
from devices.cities import CityIn, add_city
from devices.registry import DeviceIn, add_device
from lorong.core.settings import Settings
from lorong.storage.tables import RoutePlanRow
from tests.api.conftest import serve

ROUTES = sorted((method, route.path) for module in ROUTERS for route in module.router.routes
                if isinstance(route, APIRoute) for method in route.methods)
"""Every (method, path) of the app."""

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/devices"): {"id": "JKT-BIN-9", "kind": "bin", "depth_mm": 1000, "city_id": "jakarta"},
    ("PATCH", "/devices/{device_id}"): {"street": "Jl. Thamrin"},
    ("POST", "/tokens"): {"name": "jkt", "role": "crew", "city_id": "jakarta"},
    ("POST", "/bins/{device_id}/cant-empty"): {"reason": "blocked"},
    ("POST", "/alerts/{alert_id}/clear"): {"reason": "done"},
}
PARAMS: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/export/readings"): {"from": "2026-12-01T00:00:00+00:00", "to": "2026-12-02T00:00:00+00:00",
                                  "city": "jakarta"},
    ("GET", "/alerts"): {"city": "jakarta"},
    ("GET", "/bins"): {"city": "jakarta"},
}
"""Query parameters that ask for Jakarta where a route takes its city from them."""
NO_CITY_DATA = {"/health", "/metrics", "/", "/sw.js", "/me", "/alerts/types"}
"""Routes that show no city's devices, alerts or tokens."""


@pytest.fixture
def world(sessions: sessionmaker[Session], settings: Settings) -> Iterator[dict[str, Any]]:
    """Two cities with a bin, a station, an alert, a route plan and a token each; the API served."""
    now = datetime.now(UTC)
    day = now.astimezone(ZoneInfo("Asia/Makassar")).date().isoformat()
    ids: dict[str, Any] = {}
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta", centre=(-6.2, 106.85)))
        for prefix, city in (("MKS", "makassar"), ("JKT", "jakarta")):
            add_device(s, DeviceIn(id=f"{prefix}-BIN-1", kind="bin", depth_mm=1000, city_id=city,
                                   kecamatan=f"{prefix}-kec"))
            add_device(s, DeviceIn(id=f"{prefix}-AIR-1", kind="air", city_id=city, kecamatan=f"{prefix}-kec"))
            alert, _ = AlertBook(s).raise_(f"{prefix}-BIN-1", "bin_full", "major", now, {}, f"{prefix}-kec")
            s.add(RoutePlanRow(day=day, vehicle=0 if prefix == "MKS" else 1, distance_km=1.0, created_at=now,
                               stops={"stops": [{"device_id": f"{prefix}-BIN-1", "demand_l": 100}]}))
            s.flush()
            ids[prefix] = {"alert": alert.id, "token": create_token(s, f"{prefix}-crew", "crew", city=city)[0].id}
        ids["mks_crew"] = create_token(s, "mks", "crew", city="makassar")[1]
        ids["jkt_crew"] = create_token(s, "jkt", "crew", city="jakarta")[1]
        ids["mks_admin"] = create_token(s, "mks-admin", "admin", city="makassar")[1]
        ids["admin"] = create_token(s, "province", "admin")[1]
    srv = serve(settings)
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        ids["client"] = client
        yield ids
    srv.stop()


def _path(path: str, ids: dict[str, Any], prefix: str = "JKT") -> str:
    """``path`` with Jakarta's ids (``prefix`` JKT) or ids nothing has (``prefix`` NOPE)."""
    kind = "AIR" if path.startswith("/air") else "BIN"
    alert, token = (ids["JKT"]["alert"], ids["JKT"]["token"]) if prefix == "JKT" else (99999, 99999)
    return (path.replace("{device_id}", f"{prefix}-{kind}-1").replace("{alert_id}", str(alert))
            .replace("{token_id}", str(token)))


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_a_makassar_token_never_sees_jakarta(world: dict[str, Any], method: str, path: str) -> None:
    client: httpx.Client = world["client"]
    params = PARAMS.get((method, path))
    token = world["mks_admin"] if method != "GET" or path == "/tokens" or params else world["mks_crew"]
    headers = {"Authorization": f"Bearer {token}"}
    body = BODIES.get((method, path))
    response = client.request(method, _path(path, world), headers=headers, json=body, params=params)
    if "{" in path:  # a Jakarta device, alert or token: the very answer about one that does not exist
        assert response.status_code == 404, response.text
        nothing = client.request(method, _path(path, world, "NOPE"), headers=headers, json=body)
        alert, token = str(world["JKT"]["alert"]), str(world["JKT"]["token"])
        assert response.text.replace("JKT", "NOPE").replace(f" {alert}", " 99999").replace(
            f" {token}", " 99999") == nothing.text
        return
    assert "JKT" not in response.text and "jakarta" not in response.text.lower()
    if method != "GET" or params:  # writing into Jakarta, or asking for it by name
        assert response.status_code == 403, response.text
    elif path not in NO_CITY_DATA:  # a listing: Makassar's own things are there
        assert response.status_code == 200, response.text
        assert ("MKS" in response.text) or (path == "/tokens" and "MKS-crew" in response.text)


def test_a_provincial_token_sees_both_cities(world: dict[str, Any]) -> None:
    client: httpx.Client = world["client"]
    headers = {"Authorization": f"Bearer {world['admin']}"}
    for path in ("/devices", "/bins", "/air/stations", "/alerts", "/routes", "/tokens"):
        text = client.get(path, headers=headers).text
        assert "JKT" in text and "MKS" in text, (path, text)
    assert client.get("/bins/JKT-BIN-1", headers=headers).status_code == 200
    assert client.get(f"/alerts/{world['JKT']['alert']}", headers=headers).json()["city_id"] == "jakarta"


def test_a_provincial_token_lists_one_city(world: dict[str, Any]) -> None:
    """An officer of the province working on Jakarta: ``?city=`` on the alert and bin lists (as on
    ``/routes`` and the export); a city not in the registry is a 422 naming the known ones."""
    client: httpx.Client = world["client"]
    headers = {"Authorization": f"Bearer {world['admin']}"}
    for path in ("/alerts", "/bins"):
        got = client.get(path, headers=headers, params={"city": "jakarta"})
        assert got.status_code == 200, got.text
        assert {a["device_id"] if path == "/alerts" else a["id"] for a in got.json()} == {"JKT-BIN-1"}
        bad = client.get(path, headers=headers, params={"city": "surabaya"})
        assert bad.status_code == 422 and "known cities: jakarta, makassar" in bad.json()["detail"], bad.text


def test_a_scoped_admin_makes_tokens_of_its_city(world: dict[str, Any]) -> None:
    client: httpx.Client = world["client"]
    headers = {"Authorization": f"Bearer {world['mks_admin']}"}
    made = client.post("/tokens", headers=headers, json={"name": "budi", "role": "crew"})
    assert made.status_code == 201 and made.json()["city_id"] == "makassar"
    every = client.post("/tokens", headers=headers, json={"name": "all", "role": "crew", "city_id": None})
    assert every.status_code == 201 and every.json()["city_id"] == "makassar"  # none named: its own
    device = client.post("/devices", headers=headers, json={"id": "MKS-BIN-2", "kind": "bin", "depth_mm": 1000})
    assert device.status_code == 201 and device.json()["city_id"] == "makassar"


def test_a_city_token_with_an_area(world: dict[str, Any], sessions: sessionmaker[Session]) -> None:
    """City and area together: another city's bin or alert is a 404, one of its own city outside
    the area a 403; the area is made of the token's city's kecamatan only."""
    client: httpx.Client = world["client"]
    province = {"Authorization": f"Bearer {world['admin']}"}
    added = client.post("/devices", headers=province,
                        json={"id": "MKS-BIN-2", "kind": "bin", "depth_mm": 1000, "city_id": "makassar",
                              "kecamatan": "Wajo"})
    assert added.status_code == 201, added.text
    with sessions.begin() as s:
        wajo_alert = AlertBook(s).raise_("MKS-BIN-2", "bin_full", "major", datetime.now(UTC), {}, "Wajo")[0].id

    foreign = client.post("/tokens", headers=province,
                          json={"name": "x", "role": "crew", "city_id": "makassar", "kecamatan": ["jkt-kec"]})
    assert foreign.status_code == 422
    assert foreign.json()["detail"] == "kecamatan: no device of makassar is in jkt-kec; known kecamatan: MKS-kec, Wajo"
    mks_admin = {"Authorization": f"Bearer {world['mks_admin']}"}
    assert client.post("/tokens", headers=mks_admin,
                       json={"name": "x", "role": "crew", "kecamatan": ["JKT-kec"]}).status_code == 422
    made = client.post("/tokens", headers=mks_admin, json={"name": "budi", "role": "crew", "kecamatan": ["wajo"]})
    assert made.status_code == 201, made.text
    assert (made.json()["city_id"], made.json()["area"]) == ("makassar", ["Wajo"])

    budi = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/me", headers=budi).json()["area"] == ["Wajo"]
    assert [b["id"] for b in client.get("/bins", headers=budi).json()] == ["MKS-BIN-2"]
    assert client.get("/bins/MKS-BIN-2", headers=budi).status_code == 200
    outside = client.get("/bins/MKS-BIN-1", headers=budi)
    assert outside.status_code == 403
    assert outside.json()["detail"] == "bin MKS-BIN-1 is in MKS-kec, outside this token's area (Wajo)"
    assert client.get("/bins/JKT-BIN-1", headers=budi).status_code == 404
    assert [a["id"] for a in client.get("/alerts?status=any", headers=budi).json()] == [wajo_alert]
    assert client.get(f"/alerts/{wajo_alert}", headers=budi).status_code == 200
    assert client.get(f"/alerts/{world['MKS']['alert']}", headers=budi).status_code == 403
    assert client.get(f"/alerts/{world['JKT']['alert']}", headers=budi).status_code == 404
    jkt_ack = client.post(f"/alerts/{world['JKT']['alert']}/ack", headers=budi)
    assert jkt_ack.status_code == 404 and jkt_ack.json()["detail"] == f"no alert {world['JKT']['alert']}"
    assert client.post(f"/alerts/{world['MKS']['alert']}/ack", headers=budi).status_code == 403
    assert client.post("/bins/JKT-BIN-1/emptied", headers=budi).status_code == 404
    assert client.post("/bins/MKS-BIN-1/emptied", headers=budi).status_code == 403


@contextmanager
def logged_in(browser: Browser, client: httpx.Client, token: str) -> Iterator[Page]:
    """A 390 px phone page of the served crew page, logged in with ``token``; off-loopback refused."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(str(client.base_url)) else r.abort())
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(str(client.base_url) + "/")
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        yield page
    finally:
        ctx.close()


def test_me_names_the_tokens_city_and_its_map_centre(world: dict[str, Any], browser: Browser) -> None:
    """``GET /me`` gives the token's city and that city's map centre; the crew page's map opens on it
    (Jakarta's bin has no coordinates, so nothing else moves the map)."""
    client: httpx.Client = world["client"]
    jkt = client.get("/me", headers={"Authorization": f"Bearer {world['jkt_crew']}"}).json()
    assert (jkt["city"], jkt["centre"]) == ("jakarta", [-6.2, 106.85])
    mks = client.get("/me", headers={"Authorization": f"Bearer {world['mks_crew']}"}).json()
    assert (mks["city"], mks["centre"]) == ("makassar", None)  # registered without a centre
    every = client.get("/me", headers={"Authorization": f"Bearer {world['admin']}"}).json()
    assert (every["city"], every["centre"]) == (None, None)

    with logged_in(browser, client, world["jkt_crew"]) as page:
        page.click("#tab-map")
        expect(page.locator("#map .leaflet-pane").first).to_be_attached()
        # the map may be drawn before /me answers: it moves to the city's centre once it does
        page.wait_for_function("() => state.data && state.map && state.map.getCenter().lat < -6")
        centre = page.evaluate("(() => { const c = state.map.getCenter(); return [c.lat, c.lng]; })()")
        assert centre == pytest.approx([-6.2, 106.85], abs=1e-3)  # Leaflet rounds to whole pixels


def test_crew_page_shows_times_in_the_tokens_city_zone(world: dict[str, Any], browser: Browser,
                                                        settings: Settings) -> None:
    """``GET /me`` gives the token's city's IANA zone (the deployment's default zone for a token of
    every city), and the crew page shows its times in it: a Jakarta crew reads WIB, not WITA."""
    client: httpx.Client = world["client"]
    me = {who: client.get("/me", headers={"Authorization": f"Bearer {world[who]}"}).json()["timezone"]
          for who in ("jkt_crew", "mks_crew", "admin")}
    assert me == {"jkt_crew": "Asia/Jakarta", "mks_crew": "Asia/Makassar", "admin": settings.analytics.timezone}

    with logged_in(browser, client, world["jkt_crew"]) as page:
        expect(page.locator("#updated")).to_contain_text(" WIB")
        shown = page.locator("#updated").inner_text()
        now = datetime.now(UTC)
        assert shown in {(now + timedelta(minutes=m)).astimezone(ZoneInfo("Asia/Jakarta")).strftime("%H.%M WIB")
                         for m in (-2, -1, 0)}
        abbr = page.evaluate("""[zoneAbbr("Asia/Pontianak"), zoneAbbr("Asia/Makassar"), zoneAbbr("Asia/Jayapura"),
                                 zoneAbbr("Asia/Tokyo")]""")
        assert abbr == ["WIB", "WITA", "WIT", "GMT+9"]  # Intl's short name where Indonesia has no word


def test_a_city_token_filters_by_its_own_kecamatan_only(world: dict[str, Any]) -> None:
    """Issue 14 item 28 with cities: a Makassar token asking ``?kecamatan=jkt-kec`` (Jakarta's) got ``[]``
    on the lists, as if Makassar had such a kecamatan with nothing in it, and a name nobody has got a 422
    listing Jakarta's kecamatan too. Both are a 422 naming Makassar's kecamatan only, as the export does."""
    client: httpx.Client = world["client"]
    headers = {"Authorization": f"Bearer {world['mks_admin']}"}
    export = {"from": "2026-12-01T00:00:00+00:00", "to": "2026-12-02T00:00:00+00:00"}
    for path in ("/bins", "/air/stations", "/alerts", "/devices", "/export/readings"):
        params = export if path == "/export/readings" else {}
        own = client.get(path, headers=headers, params={**params, "kecamatan": "mks-KEC"})
        assert own.status_code == 200, (path, own.text)
        for asked in ("jkt-kec", "Nowhere"):
            r = client.get(path, headers=headers, params={**params, "kecamatan": asked})
            assert r.status_code == 422, (path, asked, r.text)
            assert "MKS-kec" in r.json()["detail"] and "JKT" not in r.text, (path, asked, r.text)
    # a token of every city asking for one city: that city's kecamatan
    headers = {"Authorization": f"Bearer {world['admin']}"}
    r = client.get("/bins", headers=headers, params={"city": "makassar", "kecamatan": "jkt-kec"})
    assert r.status_code == 422 and "JKT" not in r.text, r.text
