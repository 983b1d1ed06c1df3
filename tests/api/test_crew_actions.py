"""What a crew does at a bin, over the real API: the type catalogue, locations on alerts, history
with reasons, "emptied" and "can't empty", today's route with arrival estimates, and exactly-once
POSTs by ``Idempotency-Key``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.idempotency import KEEP
from api.routes.collection import STOP_MIN, TRUCK_KMH, today_wita
from lorong.core.alerts import ALERT_TYPES
from lorong.core.geo import haversine_m
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow, CollectionRow, DeviceRow, IdempotencyKeyRow
from tests.api.seed import add_route, fleet

pytestmark = pytest.mark.integration

WITA = ZoneInfo("Asia/Makassar")
Auth = Callable[[str], dict[str, str]]


def _city(sessions: sessionmaker[Session]) -> None:
    """The seed fleet, with street / kelurahan / landmark on two bins and today's route."""
    now = utcnow()
    fleet(sessions, now)
    with sessions.begin() as s:
        b1 = s.get(DeviceRow, "MKS-BIN-0001")
        assert b1 is not None
        b1.kelurahan, b1.landmark = "Melayu Baru", "depan Masjid Raya"
        b3 = s.get(DeviceRow, "MKS-BIN-0003")
        assert b3 is not None
        b3.street, b3.kelurahan, b3.landmark = "Jl. Sunu", "Suangga", "Pasar Terong"
        add_route(s, today_wita(now), 0, {"stops": [{"device_id": "MKS-BIN-0001"}, {"device_id": "MKS-BIN-0003"},
                                                    {"device_id": "MKS-BIN-0002"}],
                                          "depot": [-5.14, 119.42], "load_l": 900, "capacity_l": 8000}, 9.5, now)


def test_types_catalogue_and_me(client: httpx.Client, auth: Auth) -> None:
    body = client.get("/alerts/types", headers=auth("crew")).json()
    assert [t["name"] for t in body["types"]] == list(ALERT_TYPES)
    fire = next(t for t in body["types"] if t["name"] == "fire")
    assert fire["severities"] == ["major", "critical"] and fire["role"] == "crew"
    assert "113" in fire["words"]["id"]["action"] and fire["words"]["en"]["title"] == "Fire in bin"
    assert body["cant_empty_reasons"]["blocked"] == {"id": "Jalan terhalang", "en": "Way blocked"}
    assert client.get("/alerts?type=cant_empty", headers=auth("crew")).status_code == 200
    me = client.get("/me", headers=auth("officer")).json()
    assert me == {"name": "OFFICER", "role": "officer", "acts_on": ["pm25_high", "pm25_spike", "pm25_episode"],
                  "may_collect": False, "area": [], "city": None, "centre": None, "timezone": "Asia/Makassar"}
    assert client.get("/me", headers=auth("crew")).json()["may_collect"] is True


def test_alerts_carry_their_location(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    alerts = {a["device_id"]: a for a in client.get("/alerts", headers=auth("crew")).json()}
    a1 = alerts["MKS-BIN-0001"]
    assert (a1["street"], a1["kelurahan"], a1["landmark"]) == ("Jl. Somba Opu", "Melayu Baru", "depan Masjid Raya")
    assert (a1["lat"], a1["lon"]) == (-5.13, 119.41)
    assert alerts["MKS-AIR-01"]["lat"] == -5.14
    one = client.get(f"/alerts/{alerts['MKS-BIN-0003']['id']}", headers=auth("crew")).json()
    assert one["landmark"] == "Pasar Terong"


def test_clear_reason_and_history(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    alerts = {a["device_id"]: a for a in client.get("/alerts", headers=auth("crew")).json()}
    aid = alerts["MKS-BIN-0003"]["id"]
    assert client.post(f"/alerts/{aid}/ack", headers=auth("crew")).status_code == 200
    r = client.post(f"/alerts/{aid}/clear", headers=auth("crew"), json={"reason": "False alarm: bag on sensor"})
    assert r.status_code == 200 and r.json()["street"] == "Jl. Sunu"
    hist = client.get(f"/alerts/{aid}/history", headers=auth("officer")).json()
    assert [(h["action"], h["actor"], h["reason"]) for h in hist] == [
        ("opened", "system", ""), ("acknowledged", "crew:CREW", ""),
        ("cleared", "crew:CREW", "False alarm: bag on sensor")]
    # an officer may not act on a bin alert: no button on the page, and a 403 here
    pm = alerts["MKS-AIR-01"]["id"]
    assert client.post(f"/alerts/{pm}/ack", headers=auth("crew")).status_code == 403
    assert client.post(f"/alerts/{pm}/ack", headers=auth("officer")).status_code == 200


def test_emptied_records_a_collection_and_clears_full_alerts_once(
        client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    headers = {**auth("crew"), "Idempotency-Key": "phone-0001-aaaa"}
    at = (utcnow() - timedelta(minutes=7)).isoformat()
    first = client.post("/bins/MKS-BIN-0001/emptied", headers=headers, json={"at": at})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["level_before"] == 0.94 and body["actor"] == "crew:CREW" and len(body["cleared"]) == 1
    again = client.post("/bins/MKS-BIN-0001/emptied", headers=headers, json={"at": at})
    assert again.status_code == 200 and again.json() == body
    assert again.headers["Idempotent-Replayed"] == "true"
    with sessions() as s:
        rows = s.scalars(select(CollectionRow)).all()
        assert [(r.device_id, r.source, r.actor, r.level_before, r.level_after) for r in rows] == [
            ("MKS-BIN-0001", "crew", "crew:CREW", 0.94, None)]
        alert = s.get(AlertRow, body["cleared"][0])
        assert alert is not None and alert.type == "bin_full" and alert.status == "cleared"
        cleared = s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.action == "cleared")).all()
        assert [(h.actor, h.details) for h in cleared] == [("crew:CREW", {"reason": "emptied by crew:CREW"})]
    # the same key on another path is a client bug, said so
    r = client.post("/bins/MKS-BIN-0002/emptied", headers=headers)
    assert r.status_code == 422 and "make a new key" in r.json()["detail"]
    # without a key every call applies (an API client that wants that)
    assert client.post("/bins/MKS-BIN-0002/emptied", headers=auth("crew")).json()["cleared"] == []
    assert client.post("/bins/MKS-AIR-01/emptied", headers=auth("crew")).status_code == 404
    old = (utcnow() - timedelta(days=2)).isoformat()
    assert client.post("/bins/MKS-BIN-0002/emptied", headers=auth("crew"), json={"at": old}).status_code == 422


def test_a_bin_emptied_since_its_last_reading_no_longer_shows_full(
        client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    """Right after Emptied, the bin's newest reading (94 %, 5 minutes old) is from before: the bins list
    and today's route show no level and the bin is not counted full until it reports again (a crew saw
    "Isi 52 %" beside "Dikosongkan 04.58" and "7 tong penuh" stay after emptying them)."""
    _city(sessions)
    before = {b["id"]: b for b in client.get("/bins", headers=auth("crew")).json()}
    assert (before["MKS-BIN-0001"]["fillingLevel"], before["MKS-BIN-0001"]["status"]) == (0.94, "full")
    assert client.post("/bins/MKS-BIN-0001/emptied", headers=auth("crew")).status_code == 200
    after = {b["id"]: b for b in client.get("/bins", headers=auth("crew")).json()}
    b1 = after["MKS-BIN-0001"]
    assert (b1["fillingLevel"], b1["status"], b1["expectedFullAt"]) == (None, "ok", None)
    assert b1["dateLastEmptying"] is not None
    assert after["MKS-BIN-0003"]["status"] == "full"  # not emptied: unchanged
    stops = {s["id"]: s for r in client.get("/routes", headers=auth("crew")).json() for s in r["stops"]}
    assert stops["MKS-BIN-0001"]["emptiedAt"] is not None and stops["MKS-BIN-0001"]["fillingLevel"] is None
    assert stops["MKS-BIN-0003"]["fillingLevel"] == 0.81


def test_emptied_after_the_sensor_saw_the_fall_is_the_same_pickup(
        client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    """The truck emptied the bin, the sensor showed the fall, then the crew pressed Emptied: one
    pickup, the sensor's, now confirmed by the person (not "2 pickups (1 by sensor, 1 by crew)")."""
    _city(sessions)
    now = utcnow()
    with sessions.begin() as s:
        s.add(CollectionRow(device_id="MKS-BIN-0001", at=now - timedelta(minutes=20), level_before=0.94,
                            level_after=0.03, source="sensor"))
    at = (now - timedelta(minutes=5)).isoformat()
    r = client.post("/bins/MKS-BIN-0001/emptied", headers=auth("crew"), json={"at": at})
    assert r.status_code == 200, r.text
    assert r.json()["level_before"] == 0.94
    with sessions() as s:
        rows = s.scalars(select(CollectionRow).where(CollectionRow.device_id == "MKS-BIN-0001")).all()
        assert [(c.source, c.actor, c.level_before, c.level_after) for c in rows] == [
            ("crew", "crew:CREW", 0.94, 0.03)]
        assert r.json()["collection_id"] == rows[0].id


def test_cant_empty_tells_the_supervisor(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    headers = {**auth("crew"), "Idempotency-Key": "phone-0003-bbbb"}
    report = {"reason": "blocked", "note": "mobil parkir"}
    r = client.post("/bins/MKS-BIN-0003/cant-empty", headers=headers, json=report)
    assert r.status_code == 200, r.text
    assert client.post("/bins/MKS-BIN-0003/cant-empty", headers=headers, json=report).json() == r.json()
    alert = r.json()
    assert alert["type"] == "cant_empty" and alert["severity"] == "major" and alert["kecamatan"] == "Tallo"
    assert alert["details"]["reason"] == "blocked" and alert["details"]["by"] == "crew:CREW"
    seen = client.get("/alerts?type=cant_empty", headers=auth("supervisor")).json()
    assert [a["id"] for a in seen] == [alert["id"]]
    bad = client.post("/bins/MKS-BIN-0003/cant-empty", headers=auth("crew"), json={"reason": "lazy"})
    assert bad.status_code == 422
    hist = client.get(f"/alerts/{alert['id']}/history", headers=auth("supervisor")).json()
    assert [(h["action"], h["actor"]) for h in hist] == [("opened", "crew:CREW")]
    assert client.post(f"/alerts/{alert['id']}/ack", headers=auth("crew")).status_code == 403
    assert client.post(f"/alerts/{alert['id']}/ack", headers=auth("supervisor")).status_code == 200
    with sessions() as s:
        assert len(s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).all()) == 1
        assert len(s.scalars(select(IdempotencyKeyRow)).all()) == 1


def test_todays_route_view(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    client.post("/bins/MKS-BIN-0003/cant-empty", headers=auth("crew"), json={"reason": "damaged"})
    [route] = client.get("/routes", headers=auth("crew")).json()
    stops = route["stops"]
    assert [s["id"] for s in stops] == ["MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002"]
    s1, s3, s2 = stops
    assert (s1["street"], s1["kelurahan"], s1["landmark"]) == ("Jl. Somba Opu", "Melayu Baru", "depan Masjid Raya")
    assert s3["problem"] == "damaged" and s3["eta"] is None
    # the truck is at the depot: leg depot -> 0001 at TRUCK_KMH, then STOP_MIN there, then 0001 -> 0002
    # (0003 is skipped: it cannot be emptied); 0001 fills 0.02/h, 0002 0.05/h (seed)
    # from now, or from the 06:00 WITA round start while it is ahead (the route of today looked at at 02:00)
    now = utcnow()
    depart = max(now, datetime.combine(now.astimezone(WITA).date(), time(6), WITA).astimezone(UTC))
    wait = (depart - now).total_seconds() / 3600
    h1 = haversine_m((-5.14, 119.42), (-5.13, 119.41)) / 1000 / TRUCK_KMH
    h2 = h1 + STOP_MIN / 60 + haversine_m((-5.13, 119.41), (-5.135, 119.416)) / 1000 / TRUCK_KMH
    assert abs(datetime.fromisoformat(s1["eta"]) - (depart + timedelta(hours=h1))) < timedelta(minutes=1)
    assert s1["expectedFillingLevel"] == pytest.approx(min(1.0, 0.94 + 0.02 * (wait + h1)), abs=5e-4)  # to 1 mm
    assert s2["expectedFillingLevel"] == pytest.approx(min(1.0, 0.55 + 0.05 * (wait + h2)), abs=5e-4)
    assert s1["emptiedAt"] is None and s1["fillRate_per_h"] == 0.02
    client.post("/bins/MKS-BIN-0001/emptied", headers=auth("crew"))
    [route] = client.get("/routes", headers=auth("crew")).json()
    assert route["stops"][0]["emptiedAt"] is not None and route["stops"][0]["eta"] is None
    assert route["stops"][2]["eta"] is not None


def test_old_idempotency_keys_are_dropped(client: httpx.Client, sessions: sessionmaker[Session], auth: Auth) -> None:
    _city(sessions)
    client.post("/bins/MKS-BIN-0002/emptied", headers={**auth("crew"), "Idempotency-Key": "old-key-0001"})
    with sessions.begin() as s:
        row = s.scalars(select(IdempotencyKeyRow)).one()
        row.created_at = utcnow() - KEEP - timedelta(minutes=1)
    client.post("/bins/MKS-BIN-0004/emptied", headers={**auth("crew"), "Idempotency-Key": "new-key-0002"})
    with sessions() as s:
        assert s.scalars(select(IdempotencyKeyRow.key)).all() == ["new-key-0002"]


@pytest.mark.parametrize(("role", "path", "body", "field"), [
    ("admin", "/tokens", {"name": "x", "role": "crew", "city": "jakarta"}, "city"),  # city_id misspelt
    ("crew", "/bins/MKS-BIN-0001/emptied", {"note": "", "when": "now"}, "when"),
    ("crew", "/bins/MKS-BIN-0001/cant-empty", {"reason": "blocked", "photo": "x.jpg"}, "photo"),
    ("crew", "/alerts/1/clear", {"reason": "emptied", "force": True}, "force"),
])
def test_an_unknown_field_in_a_body_is_422_not_ignored(client: httpx.Client, auth: Auth, role: str, path: str,
                                                        body: dict[str, object], field: str) -> None:
    """A misspelt field is refused, not dropped: ``"city": "jakarta"`` in ``POST /tokens`` made a token
    for every city (``city_id`` null) with a 201."""
    r = client.post(path, headers=auth(role), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"body field '{field}': is not a known field"), r.text
    if path == "/tokens":
        names = [t["name"] for t in client.get("/tokens", headers=auth("admin")).json()]
        assert "x" not in names  # nothing was made


def test_tomorrows_route_arrives_from_its_round_start(client: httpx.Client, sessions: sessionmaker[Session],
                                                     auth: Auth) -> None:
    """A plan made at 02:06 for the 06:00 round said the truck reached its first bin at 02:12, and the
    fill expected there was the fill now: arrivals count from the plan's round start while it is ahead,
    and the fill grows from now until then (a new user's finding)."""
    _city(sessions)
    now = utcnow()
    tomorrow = (now.astimezone(WITA) + timedelta(days=1)).date()
    with sessions.begin() as s:
        add_route(s, tomorrow.isoformat(), 0, {"stops": [{"device_id": "MKS-BIN-0002"}], "depot": [-5.14, 119.42],
                                               "load_l": 300, "capacity_l": 8000}, 2.0, now)
    [route] = client.get(f"/routes?day={tomorrow.isoformat()}", headers=auth("crew")).json()
    [stop] = route["stops"]
    start = datetime.combine(tomorrow, time(6), WITA)
    leg = haversine_m((-5.14, 119.42), (-5.135, 119.416)) / 1000 / TRUCK_KMH
    assert abs(datetime.fromisoformat(stop["eta"]) - (start + timedelta(hours=leg))) < timedelta(seconds=1)
    hours = (start - now).total_seconds() / 3600 + leg
    assert stop["expectedFillingLevel"] == pytest.approx(min(1.0, 0.55 + 0.05 * hours), abs=5e-4)
