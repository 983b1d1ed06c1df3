"""A crew's day on a 390 px phone in Debian's headless Chromium, against the real API on a seeded city.

Log in as crew, open today's route, mark a stop emptied, report one "can't empty", lose the signal,
act while offline (the page still shows the route, says "offline, updated HH.MM" and queues the
actions), get the signal back, and check in the database that every action was applied exactly
once, also when an answer is lost on the way and the phone sends the same action again.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.routes.collection import WITA, today_wita
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow, CollectionRow, DeviceRow, IdempotencyKeyRow
from tests.api.conftest import Served
from tests.api.seed import add_route, fleet, raise_alert
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration

ROUTE = ["MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002", "MKS-BIN-0004"]


def seed_city(sessions: sessionmaker[Session]) -> None:
    """The seed fleet with addresses, a tipped-over bin and today's route for truck 0."""
    now = utcnow()
    fleet(sessions, now)
    places = {"MKS-BIN-0001": ("Jl. Somba Opu", "Melayu Baru", "depan Masjid Raya"),
              "MKS-BIN-0003": ("Jl. Sunu", "Suangga", "Pasar Terong"),
              "MKS-BIN-0002": ("Lorong 3 Jl. Nusantara", "Butung", ""),
              "MKS-BIN-0004": ("Jl. Rajawali", "Lette", "SD Inpres")}
    with sessions.begin() as s:
        for device_id, (street, kelurahan, landmark) in places.items():
            row = s.get(DeviceRow, device_id)
            assert row is not None
            row.street, row.kelurahan, row.landmark = street, kelurahan, landmark
        raise_alert(s, "MKS-BIN-0002", "tilt", "major", now - timedelta(minutes=15), "Wajo", tilt=1)
        add_route(s, today_wita(now), 0, {"stops": [{"device_id": d} for d in ROUTE], "depot": [-5.14, 119.42]},
                  11.2, now)


def count(sessions: sessionmaker[Session], q: object) -> int:
    with sessions() as s:
        return int(s.scalar(q) or 0)  # type: ignore[call-overload]


def collections(sessions: sessionmaker[Session], device_id: str) -> int:
    return count(sessions, select(func.count()).select_from(CollectionRow).where(
        CollectionRow.device_id == device_id, CollectionRow.source == "crew"))


def active(sessions: sessionmaker[Session], device_id: str, type_: str) -> bool:
    return count(sessions, select(func.count()).select_from(AlertRow).where(
        AlertRow.device_id == device_id, AlertRow.type == type_, AlertRow.status == "active")) == 1


def test_crew_day(phone: Page, served: Served, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    seed_city(sessions)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = phone
    ctx: BrowserContext = page.context
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(served.url + "/")
    page.fill("#token", tokens["crew"])
    page.click("#login button[type=submit]")

    # today's route opens first for a crew: stops in order, with place, fill now and on arrival
    stops = page.locator("#stops li.stop")
    expect(stops).to_have_count(4)
    expect(page.locator("#tab-route")).to_have_attribute("aria-selected", "true")
    assert stops.evaluate_all("els => els.map(e => e.dataset.stopId)") == ROUTE
    first = page.locator("li[data-stop-id=MKS-BIN-0001]")
    expect(first.locator(".where")).to_have_text("Jl. Somba Opu · Melayu Baru · depan Masjid Raya")
    expect(first.locator(".meta")).to_contain_text(
        re.compile(r"Isi 94% → (9\d|100)% saat tiba · perkiraan tiba\u00a0(\d{1,2}[ \u00a0]\w+,[ \u00a0])?\d\d\.\d\d"))
    nav = first.locator("a.nav")
    assert (nav.get_attribute("href") or "").startswith("geo:-5.13,119.41?q=-5.13,119.41(MKS-BIN-0001")
    page.screenshot(path=str(ARTIFACTS / "crew_day_1_route.png"), full_page=True)

    # emptied: a collection by a person, the bin's full alert cleared with that reason
    first.locator("button.emptied").click()
    expect(first).to_have_class(re.compile(r"\bdone\b"))
    expect(first.locator(".status")).to_contain_text("Dikosongkan")
    # sent once the toast's "Urungkan" (undo) is over, 4 s after the tap
    expect(page.locator("#toast")).to_have_text("Tercatat: sudah dikosongkan", timeout=10_000)
    assert collections(sessions, "MKS-BIN-0001") == 1
    assert not active(sessions, "MKS-BIN-0001", "bin_full")

    # can't empty: asks why, then tells the supervisor
    stop3 = page.locator("li[data-stop-id=MKS-BIN-0003]")
    stop3.locator("button.cant").click()
    dialog = page.locator("#ask")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".reason")).to_have_count(4)
    page.click("#ask-ok")
    expect(page.locator("#ask-error")).to_be_visible()  # no reason picked: not sent
    dialog.locator("input[value=blocked]").check()
    page.fill("#ask-note", "truk tidak bisa masuk, pasar")
    page.screenshot(path=str(ARTIFACTS / "crew_day_2_cant_empty.png"))
    page.click("#ask-ok")
    expect(stop3.locator(".status")).to_contain_text("Jalan terhalang")
    expect(page.locator("#toast")).to_have_text("Terkirim ke pengawas")
    assert active(sessions, "MKS-BIN-0003", "cant_empty")
    with sessions() as s:
        cant = s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).one()
        assert cant.details["reason"] == "blocked" and cant.details["note"] == "truk tidak bisa masuk, pasar"

    # the phone keeps the page (service worker) and the last answers: ready before the signal goes
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    expect(page.locator("#pending")).to_be_hidden()
    loaded_at = page.locator("#updated").inner_text()

    ctx.set_offline(True)
    page.reload()
    expect(stops).to_have_count(4)  # read from the phone, not the server
    expect(page.locator("#net")).to_contain_text("Tanpa sinyal · data pukul " + loaded_at.replace(" WITA", ""))
    expect(page.locator("#net")).to_have_class(re.compile(r"\boff\b"))
    expect(first.locator(".status")).to_contain_text("Dikosongkan")

    # offline: empty stop 3 (MKS-BIN-0002), then clear its tilt alert with a reason
    stop2 = page.locator("li[data-stop-id=MKS-BIN-0002]")
    stop2.locator("button.emptied").click()
    expect(stop2).to_have_class(re.compile(r"\bdone\b"))
    page.click("#tab-alerts")
    tilt = page.locator("[data-type=tilt]")
    expect(tilt.locator(".title")).to_have_text("Tong terguling")
    expect(tilt.locator(".where")).to_have_text("Lorong 3 Jl. Nusantara · Butung")
    tilt.locator("button.clear").click()
    expect(page.locator("#ask-title")).to_have_text("Selesaikan peringatan ini?")
    page.locator("#ask input[value=r_fixed]").check()
    page.click("#ask-ok")
    expect(tilt).to_have_count(0)
    expect(page.locator("#pending")).to_have_text("2 tindakan menunggu sinyal")
    page.screenshot(path=str(ARTIFACTS / "crew_day_3_offline.png"), full_page=True)
    assert collections(sessions, "MKS-BIN-0002") == 0 and active(sessions, "MKS-BIN-0002", "tilt")

    # back online, but the first answer is lost on the way: the server applied it, the phone did not
    # hear, and sends the same action (same Idempotency-Key) again later
    lost: list[str] = []

    def lose_answer(route: Route) -> None:
        if not lost:
            route.fetch()  # reaches the server
            lost.append(route.request.headers["idempotency-key"])
            route.abort()  # the answer never arrives
        else:
            route.continue_()

    ctx.route("**/bins/*/emptied", lose_answer)
    ctx.set_offline(False)  # the page hears "online" and sends its queue
    for _ in range(100):  # bounded: 10 s
        if lost:
            break
        page.wait_for_timeout(100)
    assert lost and collections(sessions, "MKS-BIN-0002") == 1
    expect(page.locator("#net")).to_have_class(re.compile(r"\boff\b"))  # the lost answer looks like no signal
    expect(page.locator("#pending")).to_have_text("2 tindakan menunggu sinyal")
    page.click("#refresh")  # or the next minute's retry
    expect(page.locator("#pending")).to_be_hidden()
    expect(page.locator("#net")).not_to_have_class(re.compile(r"\boff\b"))
    expect(page.locator("#net")).to_contain_text("Diperbarui")
    page.click("#tab-route")
    expect(stop2.locator(".status")).to_contain_text("Dikosongkan")
    page.screenshot(path=str(ARTIFACTS / "crew_day_4_synced.png"), full_page=True)

    # each action applied exactly once
    assert [collections(sessions, d) for d in ROUTE] == [1, 0, 1, 0]
    assert not active(sessions, "MKS-BIN-0002", "tilt")
    with sessions() as s:
        clears = s.scalars(select(AlertHistoryRow).join(AlertRow, AlertRow.id == AlertHistoryRow.alert_id)
                           .where(AlertRow.device_id == "MKS-BIN-0002", AlertHistoryRow.action == "cleared")).all()
        assert [(h.actor, h.details) for h in clears] == [("crew:CREW", {"reason": "fixed"})]
        assert len(s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).all()) == 1
        keys = s.scalars(select(IdempotencyKeyRow.key)).all()
        assert len(keys) == 4 and len(set(keys)) == 4 and lost[0] in keys  # 2 online + 2 offline actions
        emptied_at = s.scalars(select(CollectionRow.at).where(CollectionRow.device_id == "MKS-BIN-0002")).one()
    # the offline action keeps the time it was done on the phone, not the time it was sent
    assert emptied_at < utcnow() and emptied_at.astimezone(WITA).date().isoformat() == today_wita()
    assert errors == []
