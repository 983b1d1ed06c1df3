"""The crew page in Debian's headless Chromium (driven by Playwright, never ``playwright install``).

Loads ``/`` against a running API with seeded alerts, enters a crew token, checks the Bahasa
default and WITA times, switches to English, acknowledges and clears alerts, opens the map (no
tile server is reachable: markers must render on a blank background) and saves screenshots of a
390x844 phone viewport to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from core.model import utcnow
from storage.tables import AlertRow
from tests.api.conftest import Served
from tests.api.seed import fleet
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's /usr/bin/chromium, headless."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A 390x844 phone page; anything off loopback (map tiles) is refused at once."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                              has_touch=True, locale="id-ID")

    def offline(route: Route) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", offline)
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    yield page
    ctx.close()


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

    page.goto(served.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login h1")).to_have_text("Masukkan token API")
    page.fill("#token", "lrg_wrong")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("Token tidak diterima")
    page.fill("#token", tokens["crew"])
    page.click("#login button[type=submit]")

    cards = page.locator("[data-alert-id]")
    expect(cards).to_have_count(3)
    assert page.evaluate("document.documentElement.lang") == "id"
    # grouped by kecamatan, fullest bin first; the PM2.5 alert (no fill level) last
    assert page.locator("section.group").evaluate_all("els => els.map(e => e.dataset.kecamatan)") == [
        "Wajo", "Tallo", "Panakkukang"]
    first = page.locator("section[data-kecamatan=Wajo] [data-alert-id]")
    expect(first.locator(".id")).to_have_text("MKS-BIN-0001")
    expect(first).to_contain_text("Tong penuh · Isi 94%")
    expect(first.locator(".meta").nth(1)).to_contain_text(_wita_hm(started["MKS-BIN-0001"], "."))
    expect(first.locator("button.ack")).to_have_text("Konfirmasi")
    expect(page.locator("#n-alerts")).to_have_text("3")
    expect(page.locator("#n-full")).to_have_text("2")
    page.screenshot(path=str(ARTIFACTS / "crew_page_id.png"), full_page=True)

    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(first.locator("button.ack")).to_have_text("Acknowledge")
    expect(first).to_contain_text("Bin full · Fill 94%")
    expect(first.locator(".meta").nth(1)).to_contain_text(_wita_hm(started["MKS-BIN-0001"], ":"))
    expect(page.locator("#tab-map")).to_have_text("Map")

    first.locator("button.ack").click()
    expect(first.locator(".ackline")).to_contain_text("Acknowledged by crew:CREW")
    expect(first.locator("button.ack")).to_be_disabled()
    expect(page.locator("#toast")).to_have_text("Acknowledged")
    with sessions() as s:
        row = s.query(AlertRow).filter_by(device_id="MKS-BIN-0001").one()
        assert row.acknowledged and row.ack_by == "crew:CREW"
    page.screenshot(path=str(ARTIFACTS / "crew_page_en_acked.png"), full_page=True)

    page.locator("section[data-kecamatan=Tallo] button.clear").click()
    expect(cards).to_have_count(2)
    expect(page.locator("#n-alerts")).to_have_text("2")
    with sessions() as s:
        assert s.query(AlertRow).filter_by(device_id="MKS-BIN-0003").one().status == "cleared"

    page.select_option("#kec", "Panakkukang")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("High PM2.5 · 70 µg/m³")

    page.click("#tab-map")
    markers = page.locator("path.bin-marker")
    expect(markers).to_have_count(4)  # MKS-BIN-0005 has no coordinates
    fills = sorted(markers.evaluate_all("els => els.map(e => e.getAttribute('fill'))"))
    assert fills == sorted(["#e8710a", "#e8710a", "#e0a100", "#2e9e4f"])  # 0.94, 0.81, 0.55, 0.20
    page.screenshot(path=str(ARTIFACTS / "crew_page_map.png"))

    page.reload()  # token and language are remembered on the phone
    expect(cards).to_have_count(2)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#tab-alerts")).to_have_text("Alerts")
    assert errors == []
    assert missing == []
    # an inline icon: a phone browser would otherwise fetch /favicon.ico (404) on every visit
    assert page.locator("link[rel=icon]").get_attribute("href") == "data:,"
