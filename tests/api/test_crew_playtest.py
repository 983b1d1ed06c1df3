"""Findings of a second crew play-test (360x740 touch phone, Bahasa Indonesia and English, in alleys with
poor signal), each checked in Debian's headless Chromium against the real API: numbers written as the
page's language writes them, actions sent later from the queue naming their bins, an open "can't empty"
report surviving a reload, plain words for the report and the arrival time, and one map action a card."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.storage.tables import AlertRow
from tests.api.conftest import Served
from tests.api.relay import Relay
from tests.api.seed import raise_alert
from tests.api.test_crew_alley import no_signal, phone360  # noqa: F401  (phone360 is a fixture)
from tests.api.test_crew_day import active, collections, seed_city
from tests.api.test_crew_fixes import login, queued
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration


def test_numbers_in_the_pages_language(phone360: Page, served: Served, sessions: sessionmaker[Session],  # noqa: F811
                                       tokens: dict[str, str]) -> None:
    """Bahasa Indonesia writes a decimal comma ("11,2 km", "55,5 µg/m³"), English a point: a crew reading
    "11.2 km" in Bahasa reads eleven thousand two hundred (a point groups thousands there)."""
    seed_city(sessions)  # today's route: 11.2 km
    with sessions.begin() as s:
        raise_alert(s, "MKS-AIR-02", "pm25_high", "major", utcnow(), "Panakkukang", pm25_1h_mean=55.5)
    page = phone360
    login(page, served, tokens["crew"])
    summary = page.locator("#route-summary")
    expect(summary).to_have_text("4 perhentian · 0 selesai · 11,2 km")
    page.locator("#lang").tap()
    expect(summary).to_have_text("4 stops · 0 done · 11.2 km")
    page.locator("#lang").tap()

    page.once("dialog", lambda d: d.accept())
    page.locator("#logout").tap()
    page.fill("#token", tokens["officer"])
    page.locator("#login button[type=submit]").tap()
    card = page.locator("[data-alert-id]").filter(has_text="MKS-AIR-02")
    expect(card.locator(".meta")).to_contain_text("55,5 µg/m³")
    page.locator("#lang").tap()
    expect(card.locator(".meta")).to_contain_text("55.5 µg/m³")


def test_actions_sent_later_name_their_bins(phone360: Page, relay: Relay, sessions: sessionmaker[Session],  # noqa: F811
                                            tokens: dict[str, str]) -> None:
    """Three taps without signal (two stops emptied, a tilted bin taken): when the signal comes back the
    toast says which bins the server now has, not a bare "Tercatat" the crew cannot tie to a bin."""
    seed_city(sessions)
    page = phone360
    page.goto(f"http://127.0.0.1:{relay.port}/")
    page.fill("#token", tokens["crew"])
    page.locator("#login button[type=submit]").tap()
    expect(page.locator("#stops li.stop")).to_have_count(4)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    no_signal(page, relay, True)
    for bin_id in ("MKS-BIN-0001", "MKS-BIN-0003"):
        page.locator(f"li[data-stop-id={bin_id}] button.emptied").tap()
    page.locator("#tab-alerts").tap()
    page.locator("[data-type=tilt] button.ack").tap()  # the tilt alert is on MKS-BIN-0002
    page.wait_for_timeout(4500)  # the emptied taps' undo time is over: all three wait only for signal
    expect(page.locator("#pending")).to_have_text("3 tindakan menunggu sinyal")
    assert queued(page) == 3

    no_signal(page, relay, False)
    toast = page.locator("#toast")
    expect(toast).to_have_text("Terkirim: 3 tindakan (MKS-BIN-0001, MKS-BIN-0003, MKS-BIN-0002)", timeout=10_000)
    expect(toast.locator(".nobreak")).to_have_count(3)  # each id on one line
    page.screenshot(path=str(ARTIFACTS / "crew_playtest_sent_later.png"))
    expect(page.locator("#pending")).to_be_hidden()
    assert collections(sessions, "MKS-BIN-0001") == 1 and collections(sessions, "MKS-BIN-0003") == 1
    with sessions() as s:
        assert s.scalars(select(AlertRow.acknowledged).where(AlertRow.type == "tilt")).one()

    page.locator("#lang").tap()  # one more, in English, sent later alone
    page.locator("#tab-route").tap()
    no_signal(page, relay, True)
    page.locator("li[data-stop-id=MKS-BIN-0004] button.emptied").tap()
    page.wait_for_timeout(4500)
    no_signal(page, relay, False)
    expect(toast).to_have_text("Sent: 1 action (MKS-BIN-0004)", timeout=10_000)
    assert collections(sessions, "MKS-BIN-0004") == 1


def test_action_sent_after_a_reload_names_its_bin(phone360: Page, served: Served,  # noqa: F811
                                                 sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    """A tap, then a reload within its undo time: the toast that named the bin is gone with the old page,
    so the one saying it was sent names it."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    page.locator("li[data-stop-id=MKS-BIN-0003] button.emptied").tap()
    expect(page.locator("#toast .nobreak")).to_have_text("MKS-BIN-0003")
    page.reload()
    expect(page.locator("#toast")).to_have_text("Terkirim: 1 tindakan (MKS-BIN-0003)", timeout=10_000)
    assert collections(sessions, "MKS-BIN-0003") == 1


def test_open_cant_empty_report_survives_a_reload(phone360: Page, served: Served,  # noqa: F811
                                                  sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    """A reload in the alley (a thumb on the browser's reload, the phone's memory) kept the report's
    dialog, the reason picked and the note typed; Cancel forgets it, Send sends it once."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    page.locator("li[data-stop-id=MKS-BIN-0003] button.cant").tap()
    dialog = page.locator("#ask")
    dialog.locator("input[value=not_found]").check()
    page.fill("#ask-note", "sudah dicari di pasar")

    page.reload()
    expect(dialog).to_be_visible()
    expect(page.locator("#ask-text")).to_contain_text("MKS-BIN-0003")
    expect(dialog.locator("input[value=not_found]")).to_be_checked()
    expect(page.locator("#ask-note")).to_have_value("sudah dicari di pasar")
    page.screenshot(path=str(ARTIFACTS / "crew_playtest_report_restored.png"))
    page.locator("#ask-cancel").tap()
    page.reload()
    expect(page.locator("#stops li.stop")).to_have_count(4)
    expect(dialog).to_be_hidden()  # cancelled: forgotten

    page.locator("li[data-stop-id=MKS-BIN-0003] button.cant").tap()
    dialog.locator("input[value=blocked]").check()
    page.reload()
    page.locator("#ask-ok").tap()
    expect(page.locator("li[data-stop-id=MKS-BIN-0003] .status")).to_have_text(
        "✗ Tidak bisa dikosongkan: Jalan terhalang")
    expect(page.locator("#toast")).to_have_text("Terkirim ke pengawas")
    assert active(sessions, "MKS-BIN-0003", "cant_empty")
    page.reload()
    expect(page.locator("#stops li.stop")).to_have_count(4)
    expect(dialog).to_be_hidden()  # sent: not asked again


def test_open_report_survives_a_reload_without_signal(phone360: Page, relay: Relay,  # noqa: F811
                                                      sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    """The same in the alley: the page's files from the service worker, the data and the open report from
    the phone; sent once the signal is back."""
    seed_city(sessions)
    page = phone360
    page.goto(f"http://127.0.0.1:{relay.port}/")
    page.fill("#token", tokens["crew"])
    page.locator("#login button[type=submit]").tap()
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.locator("li[data-stop-id=MKS-BIN-0003] button.cant").tap()
    page.locator("#ask input[value=damaged]").check()
    page.fill("#ask-note", "roda patah")

    no_signal(page, relay, True)
    page.reload(wait_until="commit", timeout=8000)
    dialog = page.locator("#ask")
    expect(dialog).to_be_visible(timeout=8000)
    expect(dialog.locator("input[value=damaged]")).to_be_checked()
    expect(page.locator("#ask-note")).to_have_value("roda patah")
    page.locator("#ask-ok").tap()
    expect(page.locator("li[data-stop-id=MKS-BIN-0003] .unsent")).to_have_text("Belum terkirim, tersimpan di HP")
    no_signal(page, relay, False)
    expect(page.locator("#pending")).to_be_hidden(timeout=10_000)
    with sessions() as s:
        cant = s.scalars(select(AlertRow).where(AlertRow.type == "cant_empty")).one()
        assert cant.device_id == "MKS-BIN-0003"
        assert (cant.details["reason"], cant.details["note"]) == ("damaged", "roda patah")


def test_plain_words_for_the_report_and_the_arrival(phone360: Page, served: Served,  # noqa: F811
                                                    sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    """"Tidak bisa…" did not say what it was for, and "tiba ±09.40" read as a sum: the button says what
    happened (the words of the stop's status once sent), its dialog that it reports that to the supervisor,
    and the time that it is an estimate, kept on one line with its words."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    stop = page.locator("li[data-stop-id=MKS-BIN-0003]")
    expect(stop.locator("button.cant")).to_have_text("Tidak bisa dikosongkan")  # not "Tidak bisa…"
    # the day too when the round reaches it after local midnight (a run at 23:48 WITA read "tiba 8 Des, 00.02")
    expect(stop.locator(".meta")).to_contain_text(
        re.compile(r" · perkiraan tiba\u00a0(\d{1,2}[ \u00a0]\w+,[ \u00a0])?\d\d\.\d\d$"))
    stop.locator("button.cant").tap()
    expect(page.locator("#ask-title")).to_have_text("Lapor: tong ini tidak bisa dikosongkan")
    expect(page.locator("#ask-text")).to_have_text(
        "MKS-BIN-0003 · Jl. Sunu · Suangga · Pasar Terong. Apa sebabnya? Pengawas akan diberi tahu.")
    expect(page.locator("#ask .reason")).to_have_text(
        ["Jalan terhalang", "Tong tidak ditemukan", "Tong rusak", "Sensor rusak"])
    expect(page.locator("#ask-ok")).to_have_text("Kirim laporan")
    page.screenshot(path=str(ARTIFACTS / "crew_playtest_report_id.png"))
    page.locator("#ask-cancel").tap()
    page.locator("#lang").tap()
    expect(stop.locator("button.cant")).to_have_text("Can't empty this bin")
    expect(stop.locator(".meta")).to_contain_text(
        re.compile(r" · expected\u00a0(\d{1,2}[ \u00a0]\w+,[ \u00a0])?\d\d:\d\d$"))
    stop.locator("button.cant").tap()
    expect(page.locator("#ask-title")).to_have_text("Report: this bin can't be emptied")
    expect(page.locator("#ask-ok")).to_have_text("Send report")
    page.screenshot(path=str(ARTIFACTS / "crew_playtest_report_en.png"))


def test_one_map_action_per_card(phone360: Page, served: Served, sessions: sessionmaker[Session],  # noqa: F811
                                 tokens: dict[str, str]) -> None:
    """Two map buttons on a card ("Navigasi" and "Peta") made the crew stop and guess: one remains, the
    phone's own map app on the bin (``geo:`` URI, RFC 5870), which also works without signal."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    cards = {"route": page.locator("#stops li.stop"), "alerts": page.locator("[data-alert-id]")}
    for tab, found in cards.items():
        page.locator(f"#tab-{tab}").tap()
        expect(found.first).to_be_visible()
        links = found.evaluate_all("els => els.map(e => [...e.querySelectorAll('a')].map(a => a.href))")
        assert links and all(len(x) == 1 and x[0].startswith("geo:") for x in links), links
    stop = page.locator("li[data-stop-id=MKS-BIN-0003] a.nav")
    expect(stop).to_have_text("➤ Buka di peta")
    page.locator("#tab-route").tap()
    page.locator("#lang").tap()
    expect(stop).to_have_text("➤ Open in maps")
