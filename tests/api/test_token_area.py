"""A token with an area (issue 13: "crew: bins of its area"): it sees the alerts, bins and route stops
of its kecamatan only, and every action outside them is a 403 that changes nothing. The area is set
by ``lorong api token create --kecamatan`` or ``POST /tokens``; a token without one sees the city."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from api.auth import create_token
from api.cli import app as api_cli
from api.routes.collection import today_wita
from devices.cities import CityIn, add_city
from lorong.core.model import utcnow
from lorong.storage.tables import AlertRow, ApiTokenRow, CollectionRow
from tests.api.conftest import Served, bearer
from tests.api.seed import add_route, fleet, raise_alert

pytestmark = pytest.mark.integration

Auth = Callable[[str], dict[str, str]]


def _city(sessions: sessionmaker[Session]) -> dict[str, str]:
    """The seed fleet (Wajo 0001/0002, Tallo 0003/0005, Mariso 0004), a tilt alert on 0002, today's
    route through 0001, 0003 and 0002; and crew tokens for Tallo and for Tallo + Mariso."""
    now = utcnow()
    fleet(sessions, now)
    with sessions.begin() as s:
        raise_alert(s, "MKS-BIN-0002", "tilt", "minor", now, "Wajo")
        add_route(s, today_wita(now), 0, {"stops": [{"device_id": "MKS-BIN-0001"}, {"device_id": "MKS-BIN-0003"},
                                                    {"device_id": "MKS-BIN-0002"}],
                                          "depot": [-5.14, 119.42]}, 9.5, now)
        add_route(s, today_wita(now), 1, {"stops": [{"device_id": "MKS-BIN-0004"}]}, 2.0, now)
        return {"tallo": create_token(s, "Budi", "crew", area=["Tallo"])[1],
                "two": create_token(s, "Ani", "crew", area=["Tallo", "Mariso"])[1]}


def _alert_id(sessions: sessionmaker[Session], device_id: str) -> int:
    with sessions() as s:
        return s.scalars(select(AlertRow.id).where(AlertRow.device_id == device_id)).one()


def test_area_token_sees_its_area_only(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    area = _city(sessions)
    tallo = bearer(area["tallo"])
    assert client.get("/me", headers=tallo).json()["area"] == ["Tallo"]
    assert client.get("/me", headers=auth("crew")).json()["area"] == []

    # alerts: the active snapshot and the SQL listing, a kecamatan filter inside and outside the area
    assert [a["device_id"] for a in client.get("/alerts", headers=tallo).json()] == ["MKS-BIN-0003"]
    assert [a["device_id"] for a in client.get("/alerts?status=any", headers=tallo).json()] == ["MKS-BIN-0003"]
    assert len(client.get("/alerts", headers=auth("crew")).json()) == 4  # the city token sees every alert
    assert [a["device_id"] for a in client.get("/alerts?kecamatan=tallo", headers=tallo).json()] == ["MKS-BIN-0003"]
    outside = client.get("/alerts?kecamatan=Wajo", headers=tallo)
    assert outside.status_code == 403 and outside.json()["detail"] == (
        "kecamatan=Wajo is outside this token's area (Tallo)")
    wajo = _alert_id(sessions, "MKS-BIN-0001")
    r = client.get(f"/alerts/{wajo}", headers=tallo)
    assert r.status_code == 403 and r.json()["detail"] == f"alert {wajo} is in Wajo, outside this token's area (Tallo)"
    assert client.get(f"/alerts/{wajo}/history", headers=tallo).status_code == 403
    mine = _alert_id(sessions, "MKS-BIN-0003")
    assert client.get(f"/alerts/{mine}", headers=tallo).json()["kecamatan"] == "Tallo"
    assert client.get(f"/alerts/{mine}/history", headers=tallo).status_code == 200

    # bins
    assert [b["id"] for b in client.get("/bins", headers=tallo).json()] == ["MKS-BIN-0003", "MKS-BIN-0005"]
    assert [b["id"] for b in client.get("/bins", headers=bearer(area["two"])).json()] == [
        "MKS-BIN-0003", "MKS-BIN-0004", "MKS-BIN-0005"]
    assert client.get("/bins?kecamatan=Mariso", headers=tallo).status_code == 403
    assert client.get("/bins?kecamatan=Mariso", headers=bearer(area["two"])).json()[0]["id"] == "MKS-BIN-0004"
    r = client.get("/bins/MKS-BIN-0001", headers=tallo)
    assert r.status_code == 403
    assert r.json()["detail"] == "bin MKS-BIN-0001 is in Wajo, outside this token's area (Tallo)"
    assert client.get("/bins/MKS-BIN-0001/readings", headers=tallo).status_code == 403
    assert client.get("/bins/MKS-BIN-0003", headers=tallo).json()["fillingLevel"] == 0.81

    # route stops: the area's, with their place and arrival time in the whole route; no route without one
    city = client.get("/routes", headers=auth("crew")).json()
    mine_routes = client.get("/routes", headers=tallo).json()
    assert [r["vehicle"] for r in mine_routes] == [0]
    [stop] = mine_routes[0]["stops"]
    whole = city[0]["stops"][1]
    assert (stop["id"], stop["order"]) == ("MKS-BIN-0003", 2)
    # the truck reaches 0003 after 0001 (a 5-minute stop and a leg more than going straight there)
    gap = datetime.fromisoformat(stop["eta"]) - datetime.fromisoformat(whole["eta"])
    assert abs(gap.total_seconds()) < 5
    two = client.get("/routes", headers=bearer(area["two"])).json()
    assert [(r["vehicle"], [s["id"] for s in r["stops"]]) for r in two] == [
        (0, ["MKS-BIN-0003"]), (1, ["MKS-BIN-0004"])]


def test_area_token_acts_in_its_area_only(client: httpx.Client, sessions: sessionmaker[Session]) -> None:
    area = _city(sessions)
    tallo = bearer(area["tallo"])
    wajo, mine = _alert_id(sessions, "MKS-BIN-0001"), _alert_id(sessions, "MKS-BIN-0003")
    for path in (f"/alerts/{wajo}/ack", f"/alerts/{wajo}/clear", "/bins/MKS-BIN-0001/emptied"):
        r = client.post(path, headers=tallo, json={"reason": "emptied"} if path.endswith("/clear") else None)
        assert r.status_code == 403 and "outside this token's area (Tallo)" in r.json()["detail"], path
    r = client.post("/bins/MKS-BIN-0004/cant-empty", headers=tallo, json={"reason": "blocked"})
    assert r.status_code == 403 and r.json()["detail"] == (
        "bin MKS-BIN-0004 is in Mariso, outside this token's area (Tallo)")
    with sessions() as s:
        row = s.get(AlertRow, wajo)
        assert row is not None and row.status == "active" and not row.acknowledged
        assert s.scalars(select(CollectionRow)).all() == []
        assert s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).all() == []
    # inside the area every action works
    assert client.post(f"/alerts/{mine}/ack", headers=tallo).json()["ack_by"] == "crew:Budi"
    done = client.post("/bins/MKS-BIN-0003/emptied", headers=tallo).json()
    assert done["cleared"] == [mine]
    r = client.post("/bins/MKS-BIN-0005/cant-empty", headers=tallo, json={"reason": "not_found"})
    assert r.status_code == 200 and r.json()["kecamatan"] == "Tallo"
    assert client.post("/bins/MKS-BIN-0004/cant-empty", headers=bearer(area["two"]),
                       json={"reason": "damaged"}).status_code == 200


def test_area_set_from_cli_and_api(db_url: str, client: httpx.Client, sessions: sessionmaker[Session], auth: Auth,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fleet(sessions, utcnow())
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    runner = CliRunner()
    made = runner.invoke(api_cli, ["token", "create", "--role", "crew", "--name", "Budi", "--kecamatan", "tallo, Wajo"])
    assert made.exit_code == 0, made.output
    assert "area Tallo, Wajo" in made.stderr
    token = made.stdout.strip().splitlines()[0]
    assert {b["kecamatan"] for b in client.get("/bins", headers=bearer(token)).json()} == {"Tallo", "Wajo"}
    listed = runner.invoke(api_cli, ["token", "list"])
    assert "Tallo," in listed.stdout and "Wajo" in listed.stdout  # the area column (rich wraps it)
    typo = runner.invoke(api_cli, ["token", "create", "--role", "crew", "--name", "X", "--kecamatan", "Talo"])
    assert typo.exit_code == 2  # what was typed is wrong, as an unknown city in analytics route
    assert typo.stderr.strip() == ("error: --kecamatan: no device is in Talo; known kecamatan: Mariso, Panakkukang, "
                                   "Tallo, Tamalate, Wajo")
    with sessions() as s:
        rows = s.scalars(select(ApiTokenRow).where(ApiTokenRow.name.in_(["Budi", "X"])))
        assert [(r.name, r.area) for r in rows] == [("Budi", ["Tallo", "Wajo"])]

    r = client.post("/tokens", json={"name": "Ani", "role": "crew", "kecamatan": ["mariso"]}, headers=auth("admin"))
    assert r.status_code == 201 and r.json()["area"] == ["Mariso"]
    assert [b["id"] for b in client.get("/bins", headers=bearer(r.json()["token"])).json()] == ["MKS-BIN-0004"]
    bad = client.post("/tokens", json={"name": "Ani", "role": "crew", "kecamatan": ["Nowhere"]}, headers=auth("admin"))
    assert bad.status_code == 422 and "no device is in Nowhere" in bad.json()["detail"]
    assert client.post("/tokens", json={"name": "C", "role": "crew"}, headers=auth("admin")).json()["area"] is None


def test_crew_page_shows_the_area(phone: Page, served: Served, sessions: sessionmaker[Session]) -> None:
    area = _city(sessions)
    phone.goto(served.url + "/")
    phone.fill("#token", area["tallo"])
    phone.click("#login button[type=submit]")
    expect(phone.locator("#subtitle")).to_have_text("Petugas kebersihan · Tallo")
    expect(phone.locator(".stop")).to_have_count(1)
    phone.click("#tab-alerts")
    expect(phone.locator("[data-alert-id]")).to_have_count(1)
    assert phone.locator("section.group").evaluate_all("els => els.map(e => e.dataset.kecamatan)") == ["Tallo"]


def test_an_area_is_of_the_tokens_city_before_any_device_is(db_url: str, sessions: sessionmaker[Session],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``--city jakarta --kecamatan Wajo`` made a token whose area was Makassar's (a warning only, as no
    device of Jakarta was registered yet), although Jakarta's kecamatan were registered with the city."""
    fleet(sessions, utcnow())
    with sessions.begin() as s:
        add_city(s, CityIn(id="jakarta", name="Jakarta", timezone="Asia/Jakarta",
                           kecamatan={"Gambir": (-6.176, 106.82), "Menteng": (-6.196, 106.83)}))
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    runner = CliRunner()
    wrong = runner.invoke(api_cli, ["token", "create", "--role", "crew", "--name", "x", "--city", "jakarta",
                                    "--kecamatan", "Wajo"])
    assert wrong.exit_code == 2
    assert wrong.stderr.strip() == ("error: --kecamatan: no device of jakarta is in Wajo; "
                                    "known kecamatan: Gambir, Menteng")
    made = runner.invoke(api_cli, ["token", "create", "--role", "crew", "--name", "y", "--city", "jakarta",
                                   "--kecamatan", "gambir"])
    assert made.exit_code == 0 and "area Gambir" in made.stderr and "warning" not in made.stderr
