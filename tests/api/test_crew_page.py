"""The crew page in Debian's headless Chromium (driven by Playwright, never ``playwright install``).

Loads ``/`` against a running API with seeded alerts, enters a crew token, checks the Bahasa
default and WITA times, that the crew sees only the alerts it acts on (words from the catalogue,
the bin's place, map and navigation links), switches to English, acknowledges, clears with a
confirmation and a reason and reads the history, opens the map (no tile server is reachable:
markers must render on a blank background), then logs in as an officer, who sees the air-quality
alert with buttons that work. Checks the alerts view stays under 30 KB transferred before the map,
under the server's own Content-Security-Policy. Saves screenshots of a 390x844 phone viewport to tests/artifacts/.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow
from tests.api.conftest import Served
from tests.api.seed import fleet
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration

BUDGET_BYTES = 30_000
"""The alerts view before the map: page, script, style and API answers, as transferred (headers and
gzip-encoded bodies, what a phone on a poor signal waits for). The page itself is measured as the server
sends it: an earlier version of this test put a policy on it through a Playwright route, which re-served
it uncompressed (4.9 kB instead of 2.2 kB) and charged the budget bytes no phone receives; the server
sends a stricter policy itself (api/security_headers.py, default-src 'none'), which is the one checked."""


def _wita_hm(ts: datetime, sep: str) -> re.Pattern[str]:
    """``HH<sep>MM WITA`` of ``ts`` in Makassar (UTC+8), after an optional date (shown when not today)."""
    local = ts + timedelta(hours=8)
    return re.compile(rf"(\d+ \w+, )?{local.hour:02d}{re.escape(sep)}{local.minute:02d} WITA")


def test_crew_page(phone: Page, served: Served, sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    with sessions() as s:
        started = {r.device_id: r.started_at for r in s.query(AlertRow)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = phone
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    missing: list[str] = []  # e.g. a /favicon.ico the browser asks for on its own
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    transferred: list[int] = []
    page.on("requestfinished", lambda r: transferred.append(r.sizes()["responseBodySize"]
                                                            + r.sizes()["responseHeadersSize"]))

    # the page under the server's strict Content-Security-Policy: no inline script or style of ours may be refused
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    answer = page.goto(served.url + "/")
    assert answer and answer.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login h1")).to_have_text("Masukkan token API")
    page.fill("#token", "lrg_wrong")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("Token tidak diterima")
    page.fill("#token", tokens["crew"])
    page.click("#login button[type=submit]")
    expect(page.locator("#tab-route")).to_have_attribute("aria-selected", "true")  # a crew starts on its route
    page.click("#tab-alerts")

    cards = page.locator("[data-alert-id]")
    expect(cards).to_have_count(2)  # the PM2.5 alert is the officer's: a crew does not see it
    assert page.evaluate("document.documentElement.lang") == "id"
    # grouped by kecamatan, fullest bin first
    assert page.locator("section.group").evaluate_all("els => els.map(e => e.dataset.kecamatan)") == ["Wajo", "Tallo"]
    first = page.locator("section[data-kecamatan=Wajo] [data-alert-id]")
    expect(first.locator(".title")).to_have_text("Tong penuh")
    expect(first.locator(".id")).to_have_text("MKS-BIN-0001 · Wajo")
    expect(first.locator(".where")).to_have_text("Jl. Somba Opu")
    expect(first.locator(".meta")).to_contain_text("Isi 94%")
    expect(first.locator(".meta")).to_contain_text(_wita_hm(started["MKS-BIN-0001"], "."))
    expect(first.locator(".todo")).to_contain_text("Kosongkan tong ini hari ini")
    assert first.locator("a.nav").get_attribute("href") == (
        "geo:-5.13,119.41?q=-5.13,119.41(MKS-BIN-0001%20Jl.%20Somba%20Opu)")
    expect(first.locator("a")).to_have_count(1)  # one map action a card
    expect(first.locator("button.ack")).to_have_text("Saya tangani")
    expect(page.locator("#n-alerts")).to_have_text("2")
    expect(page.locator("#n-full")).to_have_text("2")
    page.wait_for_load_state("networkidle")
    assert sum(transferred) < BUDGET_BYTES, transferred
    page.screenshot(path=str(ARTIFACTS / "crew_page_id.png"), full_page=True)

    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(first.locator("button.ack")).to_have_text("I'm on it")
    expect(first.locator(".title")).to_have_text("Bin full")
    expect(first.locator(".meta")).to_contain_text(_wita_hm(started["MKS-BIN-0001"], ":"))
    expect(page.locator("#tab-map")).to_have_text("Map")

    first.locator("button.ack").click()
    expect(first.locator(".ackline")).to_contain_text("Taken by crew CREW")
    expect(first.locator("button.ack")).to_be_disabled()
    expect(page.locator("#toast")).to_have_text("Taken")
    with sessions() as s:
        row = s.query(AlertRow).filter_by(device_id="MKS-BIN-0001").one()
        assert row.acknowledged and row.ack_by == "crew:CREW"
    page.screenshot(path=str(ARTIFACTS / "crew_page_en_acked.png"), full_page=True)

    # clear asks first, and wants a reason; cancel changes nothing
    tallo = page.locator("section[data-kecamatan=Tallo] [data-alert-id]")
    tallo.locator("button.clear").click()
    expect(page.locator("#ask-title")).to_have_text("Clear this alert?")
    page.click("#ask-cancel")
    expect(page.locator("#ask")).to_be_hidden()
    expect(cards).to_have_count(2)
    tallo.locator("button.clear").click()
    page.locator("#ask input[value=r_false]").check()
    page.fill("#ask-note", "bag on the sensor")
    page.click("#ask-ok")
    expect(cards).to_have_count(1)  # at once, on the phone
    expect(page.locator("#n-alerts")).to_have_text("1")
    expect(page.locator("#toast")).to_have_text("Alert cleared")  # and on the server
    with sessions() as s:
        row = s.query(AlertRow).filter_by(device_id="MKS-BIN-0003").one()
        assert row.status == "cleared" and row.cleared_by == "crew:CREW"
    with sessions() as s:
        [h] = s.query(AlertHistoryRow).filter_by(alert_id=row.id, action="cleared").all()
        assert h.details == {"reason": "false alarm: bag on the sensor"}  # the same words in any language

    first.locator("button.history").click()
    expect(first.locator(".hist li")).to_have_count(2)
    expect(first.locator(".hist li").nth(1)).to_contain_text("taken · crew CREW")

    page.select_option("#kec", "Wajo")  # a crew's own kecamatan, remembered on the phone
    page.click("#tab-map")
    markers = page.locator("path.bin-marker")
    expect(markers).to_have_count(4)  # MKS-BIN-0005 has no coordinates
    fills = sorted(markers.evaluate_all("els => els.map(e => e.getAttribute('fill'))"))
    assert fills == sorted(["#e8710a", "#e8710a", "#e0a100", "#2e9e4f"])  # 0.94, 0.81, 0.55, 0.20
    page.screenshot(path=str(ARTIFACTS / "crew_page_map.png"))

    page.reload()  # token, language and tab are remembered on the phone
    expect(markers).to_have_count(4)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#tab-alerts")).to_have_text("Alerts")
    expect(page.locator("#kec")).to_have_value("Wajo")
    assert errors == []
    assert missing == []
    assert csp == []
    # an inline icon: a phone browser would otherwise fetch /favicon.ico (404) on every visit
    assert page.locator("link[rel=icon]").get_attribute("href") == "data:,"

    # an officer on the same page: the air-quality alert, with buttons that work; no route tab
    page.once("dialog", lambda d: d.accept())  # "Log out and remove the token from this phone?"
    page.click("#logout")
    page.fill("#token", tokens["officer"])
    page.click("#login button[type=submit]")
    expect(page.locator("#subtitle")).to_have_text("Environment officer")
    expect(page.locator("#tab-route")).to_be_hidden()
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".title")).to_have_text("High PM2.5")
    expect(cards.first).to_contain_text("70 µg/m³")
    cards.first.locator("button.ack").click()
    expect(page.locator("#toast")).to_have_text("Taken")
    with sessions() as s:
        assert s.query(AlertRow).filter_by(device_id="MKS-AIR-01").one().ack_by == "officer:OFFICER"
    assert errors == []
