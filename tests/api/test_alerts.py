"""``/alerts``: filters, keyset pagination that never repeats or skips, acknowledge and clear."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook, AlertChange
from api.alert_state import AlertFilter, active_snapshot, decode_cursor, encode_cursor, query_page, snapshot_page
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow
from tests.api.conftest import serve
from tests.api.seed import add_bin, fleet, raise_alert

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 2, tzinfo=UTC)


def _many(sessions: sessionmaker[Session], n: int) -> None:
    """``n`` bins with one alert each; every third alert shares its started_at with the previous one."""
    with sessions.begin() as s:
        for i in range(n):
            add_bin(s, f"B{i:03d}", kecamatan=("Wajo", "Tallo")[i % 2])
            at = T0 + timedelta(minutes=i - (1 if i % 3 == 2 else 0))
            raise_alert(s, f"B{i:03d}", "bin_full", ("major", "critical")[i % 2], at, ("Wajo", "Tallo")[i % 2])


def _walk(client: httpx.Client, headers: dict[str, str], query: str,
          between: Callable[[int], None] = lambda page: None) -> tuple[list[int], int]:
    ids: list[int] = []
    url: str | None = f"/alerts{query}"
    pages = 0
    while url is not None and pages < 100:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        ids += [a["id"] for a in r.json()]
        pages += 1
        between(pages)
        nxt = r.headers.get("X-Next-Cursor")
        if nxt is None:
            assert "Link" not in r.headers
            url = None
        else:
            link = r.headers["Link"]
            assert link.endswith('>; rel="next"') and f"cursor={nxt}" in link
            url = link[1:link.index(">")]
    return ids, pages


def test_pages_never_repeat_or_skip(client: httpx.Client, sessions: sessionmaker[Session],
                                    auth: Callable[[str], dict[str, str]]) -> None:
    _many(sessions, 40)
    with sessions() as s:
        expected = [r.id for r in s.scalars(select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id.desc()))]
    ids, pages = _walk(client, auth("crew"), "?limit=7")
    assert ids == expected and pages == 6
    assert len(set(ids)) == 40

    def churn(page: int) -> None:  # while a client pages: new alerts open, old ones are acknowledged and cleared
        with sessions.begin() as s:
            add_bin(s, f"N{page:03d}")
            raise_alert(s, f"N{page:03d}", "bin_full", "major", T0 + timedelta(hours=1, minutes=page))
            book = AlertBook(s)
            book.acknowledge(expected[page * 3], utcnow(), "crew:x")
            book.clear(expected[page * 3 + 1], utcnow(), "crew:x")

    ids, _ = _walk(client, auth("crew"), "?status=any&limit=7", churn)
    assert ids == expected  # every alert exactly once, in order; alerts opened meanwhile are newer than page 1


def test_filters(client: httpx.Client, sessions: sessionmaker[Session], auth: Callable[[str], dict[str, str]]) -> None:
    _many(sessions, 6)
    crew = auth("crew")

    def ids(q: str) -> list[str]:
        return [a["device_id"] for a in client.get(f"/alerts{q}", headers=crew).json()]

    assert ids("") == ["B005", "B004", "B003", "B002", "B001", "B000"]
    assert ids("?kecamatan=Tallo") == ["B005", "B003", "B001"]
    assert ids("?severity=critical&kecamatan=Wajo") == []
    assert ids("?type=pm25_high") == []
    assert ids("?device_id=B002") == ["B002"]
    with sessions.begin() as s:
        AlertBook(s).acknowledge(1, utcnow(), "crew:x")
        AlertBook(s).clear(2, utcnow(), "system")
    assert ids("?acknowledged=true") == ["B000"]
    assert ids("?status=cleared") == ["B001"]
    assert "B001" not in ids("") and len(ids("?status=any")) == 6
    r = client.get("/alerts?severity=urgent", headers=crew)
    assert r.status_code == 422 and "query parameter 'severity'" in r.json()["detail"]


def test_cursor_is_opaque_and_checked(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    at = datetime(2026, 11, 28, 2, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, 42)) == (at, 42)
    for bad in ("zzz", base64.urlsafe_b64encode(b'["2026-11-28T02:00:00", 1]').decode(),
                base64.urlsafe_b64encode(b'{"a": 1}').decode(), "%%%"):
        r = client.get("/alerts", params={"cursor": bad}, headers=auth("crew"))
        assert r.status_code == 422 and "start again without a cursor" in r.json()["detail"], bad


def test_ack_and_clear(client: httpx.Client, sessions: sessionmaker[Session],
                       auth: Callable[[str], dict[str, str]]) -> None:
    fleet(sessions, utcnow())
    crew = auth("crew")
    first = client.get("/alerts?device_id=MKS-BIN-0001", headers=crew).json()[0]
    assert (first["acknowledged"], first["status"]) == (False, "active")
    r = client.post(f"/alerts/{first['id']}/ack", headers=crew)
    assert r.status_code == 200
    acked = r.json()
    assert acked["acknowledged"] is True and acked["ack_by"] == "crew:CREW" and acked["ack_at"].endswith("Z")
    again = client.post(f"/alerts/{first['id']}/ack", headers=crew)
    assert again.status_code == 409 and again.json()["detail"] == f"alert {first['id']} is already acknowledged"
    r = client.post(f"/alerts/{first['id']}/clear", json={"reason": "emptied at 10:05"}, headers=auth("admin"))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["cleared_by"]) == ("cleared", "admin:ADMIN")
    assert client.post(f"/alerts/{first['id']}/clear", json={"reason": "emptied"}, headers=crew).status_code == 409
    assert client.get(f"/alerts/{first['id']}", headers=auth("officer")).json()["status"] == "cleared"
    second = client.get("/alerts?device_id=MKS-BIN-0003", headers=crew).json()[0]
    for blank in (None, {}, {"reason": ""}, {"reason": " \t\n"}):  # a person's clear says why (it was accepted)
        r = client.post(f"/alerts/{second['id']}/clear", json=blank, headers=crew)
        assert r.status_code == 422, (blank, r.text)
        assert "reason" in r.json()["detail"], r.text
    assert client.get(f"/alerts/{second['id']}", headers=crew).json()["status"] == "active"
    r = client.post(f"/alerts/{second['id']}/clear", json={"reason": "  false alarm "}, headers=crew)
    assert r.json()["status"] == "cleared"
    r = client.post(f"/alerts/{second['id']}/ack", headers=crew)  # nothing left to be on
    assert r.status_code == 409
    assert r.json()["detail"] == f"alert {second['id']} is already cleared; only an active alert can be acknowledged"
    assert client.get(f"/alerts/{second['id']}", headers=crew).json()["acknowledged"] is False
    with sessions() as s:
        history = [(h.action, h.actor, h.details) for h in s.scalars(
            select(AlertHistoryRow).where(AlertHistoryRow.alert_id == first["id"]).order_by(AlertHistoryRow.id))]
    assert history == [("opened", "system", {"fillingLevel": 0.94}), ("acknowledged", "crew:CREW", {}),
                       ("cleared", "admin:ADMIN", {"reason": "emptied at 10:05"})]
    for path in ("/alerts/99999/ack", "/alerts/99999/clear"):
        r = client.post(path, headers=crew, json={"reason": "done"})
        assert r.status_code == 404 and r.json()["detail"] == "no alert 99999"
    assert client.post("/alerts/0/ack", headers=crew).status_code == 422
    long = client.post(f"/alerts/{second['id']}/clear", json={"reason": "x" * 201}, headers=crew)
    assert long.status_code == 422


def test_changes_reach_notifiers(settings: Any, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    seen: list[AlertChange] = []
    srv = serve(settings, notifiers=[seen.append])
    try:
        r = httpx.post(f"{srv.url}/alerts/1/ack", headers={"Authorization": f"Bearer {tokens['crew']}"})
        assert r.status_code == 200
    finally:
        srv.stop()
    assert [(c.alert_id, c.action, c.alert["ack_by"]) for c in seen] == [(1, "acknowledged", "crew:CREW")]


def test_snapshot_and_sql_pages_agree(sessions: sessionmaker[Session]) -> None:
    _many(sessions, 30)
    with sessions.begin() as s:
        book = AlertBook(s)
        for alert_id in (3, 7, 11):
            book.acknowledge(alert_id, utcnow(), "crew:x")
        book.clear(5, utcnow(), "system")
    snap = active_snapshot(sessions, ttl_s=60)
    filters = [AlertFilter(), AlertFilter(kecamatan="Tallo"), AlertFilter(severity="critical", acknowledged=False),
               AlertFilter(acknowledged=True), AlertFilter(device_id="B010"), AlertFilter(type="pm25_high")]
    with sessions() as s:
        for f in filters:
            for limit in (1, 4, 100):
                after = None
                for _ in range(40):
                    want = query_page(s, f, after, limit)
                    assert snapshot_page(snap.items(), f, after, limit) == want, (f, after, limit)
                    if len(want) < limit:
                        break
                    after = (want[-1]["started_at"], want[-1]["id"])


def test_active_snapshot_in_the_api(settings: Any, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    srv = serve(settings, alerts_ttl_s=60.0)
    crew = {"Authorization": f"Bearer {tokens['crew']}"}
    try:
        with httpx.Client(base_url=srv.url, headers=crew) as c:
            assert len(c.get("/alerts").json()) == 3
            with sessions.begin() as s:  # the analytics job (another process) opens an alert
                add_bin(s, "MKS-BIN-0042")
                raise_alert(s, "MKS-BIN-0042", "bin_full", "critical", utcnow())
            assert len(c.get("/alerts").json()) == 3  # not yet: the snapshot is younger than its ttl
            assert len(c.get("/alerts?status=any").json()) == 4  # SQL
            assert c.post("/alerts/1/ack").status_code == 200  # a write through the API reloads it
            active = c.get("/alerts").json()
            assert len(active) == 4 and next(a for a in active if a["id"] == 1)["acknowledged"] is True
            assert c.post("/alerts/2/clear", json={"reason": "emptied"}).status_code == 200
            assert [a["id"] for a in c.get("/alerts").json()] == [4, 3, 1]
    finally:
        srv.stop()
