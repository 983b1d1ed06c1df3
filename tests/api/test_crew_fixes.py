"""Findings of a crew's play-test on a 390 px phone, each checked in Debian's headless Chromium
against the real API: "Change token" with actions still queued, logging in without signal, how
finished and failed stops look, what an alert card says, and the order of the alerts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.alerts import SEVERITIES
from lorong.core.model import utcnow
from lorong.storage.tables import AlertRow
from tests.api.conftest import Served
from tests.api.seed import fleet, raise_alert
from tests.api.test_crew_day import seed_city
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration


def login(page: Page, served: Served, token: str) -> None:
    """Open the page and log in with ``token``."""
    page.goto(served.url + "/")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#app")).to_be_visible()


def queued(page: Page) -> int:
    """How many actions the phone keeps queued (localStorage)."""
    return int(page.evaluate("JSON.parse(localStorage.getItem('lorong.queue') || '[]').length"))


def dismiss_next_dialog(page: Page) -> list[str]:
    """Answer the page's next confirm dialog "Cancel"; the list gets its message once it shows."""
    asked: list[str] = []

    def dismiss(d: Dialog) -> None:
        asked.append(d.message)
        d.dismiss()

    page.once("dialog", dismiss)
    return asked


def test_change_token_asks_before_dropping_queued_actions(phone: Page, served: Served,
                                                          sessions: sessionmaker[Session],
                                                          tokens: dict[str, str]) -> None:
    seed_city(sessions)
    page = phone
    login(page, served, tokens["crew"])
    expect(page.locator("#stops li.stop")).to_have_count(4)

    # the two chips in the bar are far enough apart for a thumb
    lang, logout = page.locator("#lang").bounding_box(), page.locator("#logout").bounding_box()
    assert lang and logout
    assert min(abs(logout["x"] - (lang["x"] + lang["width"])), abs(lang["x"] - (logout["x"] + logout["width"]))) >= 16

    page.context.set_offline(True)
    page.locator("li[data-stop-id=MKS-BIN-0001] button.emptied").click()
    expect(page.locator("#pending")).to_have_text("1 tindakan menunggu sinyal")
    assert queued(page) == 1

    asked = dismiss_next_dialog(page)
    page.click("#logout")
    expect(page.locator("#app")).to_be_visible()  # said no: still logged in, nothing lost
    assert asked and "1 tindakan belum terkirim" in asked[0] and "hilang" in asked[0]
    assert queued(page) == 1

    page.once("dialog", lambda d: d.accept())
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert queued(page) == 0
    expect(page.locator("#login-error")).to_be_hidden()


def test_login_without_signal_says_nothing_was_kept(phone: Page, served: Served, tokens: dict[str, str]) -> None:
    page = phone
    page.goto(served.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.context.set_offline(True)
    page.fill("#token", tokens["crew"])
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Tidak ada sinyal. Coba lagi saat ada sinyal.")
    page.click("#lang")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("No signal. Try again when you have signal.")
    assert page.evaluate("localStorage.getItem('lorong.token')") is None


def _rgb(css: str) -> tuple[float, float, float]:
    """``rgb(r, g, b)`` / ``rgba(...)`` -> 0..255 channels."""
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def contrast(fg: str, bg: str) -> float:
    """WCAG 2.1 contrast ratio of two CSS colours (relative luminance, WCAG 2.1 section 1.4.3)."""
    def lum(c: tuple[float, float, float]) -> float:
        ch = [x / 255 for x in c]
        lin = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(_rgb(fg)), lum(_rgb(bg))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


LOOK = """el => { const s = getComputedStyle(el), st = el.querySelector('.status'), t = el.querySelector('.title');
  return { opacity: s.opacity, bg: s.backgroundColor, border: s.borderLeftColor, status: st.textContent,
           color: getComputedStyle(st).color, titleH: t.getBoundingClientRect().height,
           line: parseFloat(getComputedStyle(t).lineHeight), clipped: t.scrollWidth > t.clientWidth + 1 }; }"""


def _settled(stop: Any) -> dict[str, Any]:
    """LOOK of a stop once the list is drawn: the page redraws it after an action's answer, and an
    element caught mid-redraw is detached (its computed style is empty)."""
    for _ in range(50):  # 10 s at most
        look: dict[str, Any] = stop.evaluate(LOOK)
        if look["opacity"]:
            return look
        time.sleep(0.2)
    raise AssertionError("the stop list never settled")


def test_finished_stops_readable_and_failures_not_green(phone: Page, served: Served,
                                                        sessions: sessionmaker[Session],
                                                        tokens: dict[str, str]) -> None:
    seed_city(sessions)
    page = phone
    login(page, served, tokens["crew"])
    emptied, failed = page.locator("li[data-stop-id=MKS-BIN-0001]"), page.locator("li[data-stop-id=MKS-BIN-0003]")
    emptied.locator("button.emptied").click()
    expect(emptied.locator(".status")).to_contain_text("Dikosongkan")
    failed.locator("button.cant").click()
    page.locator("#ask input[value=blocked]").check()
    page.click("#ask-ok")
    expect(failed.locator(".status")).to_have_text("✗ Tidak bisa dikosongkan: Jalan terhalang")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "crew_fixes_stops.png"), full_page=True)
    ok, bad = _settled(emptied), _settled(failed)
    for look in (ok, bad):
        assert look["opacity"] == "1"  # not faded
        assert contrast(look["color"], look["bg"]) >= 4.5, look  # WCAG AA for normal text
        assert look["titleH"] < 1.5 * look["line"] and not look["clipped"], look  # the bin id on one line, whole
        assert look["border"] != "rgb(223, 228, 232)"  # a coloured border marks a finished stop
    assert ok["status"].startswith("✓")
    r, g, b = _rgb(bad["color"])
    assert r > g and r > b, bad  # red / amber, not green
    assert bad["border"] != ok["border"]
    r, g, b = _rgb(bad["border"])
    assert r > g and r > b, bad


def test_alert_card_words(phone: Page, served: Served, sessions: sessionmaker[Session],
                          tokens: dict[str, str]) -> None:
    now = utcnow()
    fleet(sessions, now)
    full_since = now - timedelta(hours=3, minutes=7)
    with sessions.begin() as s:  # raised again: count 2, and the rule says since when the bin is full
        raise_alert(s, "MKS-BIN-0001", "bin_full", "major", now - timedelta(minutes=5), "Wajo", fillingLevel=0.94,
                    since=full_since.isoformat())
        assert s.query(AlertRow).filter_by(device_id="MKS-BIN-0001").one().count == 2
        # full since before the readings the rule read: "at or before" (since_exact false)
        raise_alert(s, "MKS-BIN-0003", "bin_full", "major", now - timedelta(minutes=5), "Tallo", fillingLevel=0.81,
                    since=full_since.isoformat(), since_exact=False)
    page = phone
    login(page, served, tokens["crew"])
    page.click("#tab-alerts")
    card = page.locator("[data-alert-id]").filter(has_text="MKS-BIN-0001")
    local = full_since + timedelta(hours=8)
    # a time of another local day carries its date ("sejak 6 Des, 21.02 WITA"): the suite may run after midnight
    day = r"(\d{1,2} \w+,? )?"
    expect(card.locator(".meta")).to_contain_text(re.compile(rf"sejak {day}{local.hour:02d}\.{local.minute:02d} WITA"))
    expect(card.locator(".meta")).not_to_contain_text("×")
    expect(card.locator(".sev")).to_have_text("Tinggi")
    page.click("#lang")
    expect(card.locator(".sev")).to_have_text("High")
    expect(card.locator(".meta")).to_contain_text(re.compile(rf"since {day}{local.hour:02d}:{local.minute:02d} WITA"))
    before = page.locator("[data-alert-id]").filter(has_text="MKS-BIN-0003").locator(".meta")
    expect(before).to_contain_text(re.compile(rf"since before {day}{local.hour:02d}:{local.minute:02d} WITA"))
    page.click("#lang")
    expect(before).to_contain_text(re.compile(rf"sejak sebelum {day}{local.hour:02d}\.{local.minute:02d} WITA"))
    page.click("#lang")
    page.screenshot(path=str(ARTIFACTS / "crew_fixes_alerts_en.png"), full_page=True)


def test_severity_words_match_across_languages(client: httpx.Client, auth: Callable[[str], dict[str, str]]) -> None:
    out = client.get("/alerts/types", headers=auth("crew"))
    assert out.status_code == 200
    words = out.json()["severity_words"]
    assert list(words) == list(SEVERITIES)
    pairs = {w["id"]: w["en"] for w in words.values()}
    # one scale, the same rung in both languages (Bahasa words as the crew says them)
    assert pairs == {"Kritis": "Critical", "Tinggi": "High", "Sedang": "Medium", "Rendah": "Low"}


def test_alerts_sorted_by_severity_then_fill_and_stable(phone: Page, served: Served,
                                                        sessions: sessionmaker[Session],
                                                        tokens: dict[str, str]) -> None:
    now = utcnow()
    fleet(sessions, now)  # bin_full major on MKS-BIN-0001 (0.94, Wajo) and MKS-BIN-0003 (0.81, Tallo)
    at = now - timedelta(minutes=3)
    with sessions.begin() as s:
        raise_alert(s, "MKS-BIN-0001", "tilt", "major", at, "Wajo", tilt=1)  # ties bin_full: same level, same bin
        raise_alert(s, "MKS-BIN-0001", "bin_full_soon", "warning", at, "Wajo")
        raise_alert(s, "MKS-BIN-0004", "lid_open", "minor", at, "Mariso", lidOpen=1)
        raise_alert(s, "MKS-BIN-0002", "fire", "critical", at, "Wajo", temperature=71.0)
        ids = {(r.device_id, r.type): r.id for r in s.query(AlertRow)}
    assert ids[("MKS-BIN-0001", "bin_full")] < ids[("MKS-BIN-0001", "tilt")]
    page = phone
    login(page, served, tokens["crew"])
    page.click("#tab-alerts")
    cards = page.locator("[data-alert-id]")
    expect(cards).to_have_count(6)
    order = "els => els.map(e => e.querySelector('.id').textContent.split(' ')[0] + ' ' + e.dataset.type)"
    want = ["MKS-BIN-0002 fire", "MKS-BIN-0001 bin_full", "MKS-BIN-0001 tilt", "MKS-BIN-0001 bin_full_soon",
            "MKS-BIN-0003 bin_full", "MKS-BIN-0004 lid_open"]  # Wajo first: it has the critical alert
    assert cards.evaluate_all(order) == want
    assert page.locator("section.group").evaluate_all("els => els.map(e => e.dataset.kecamatan)") == [
        "Wajo", "Tallo", "Mariso"]
    for _ in range(3):  # refreshes do not reshuffle
        page.click("#refresh")
        page.wait_for_load_state("networkidle")
        assert cards.evaluate_all(order) == want
    page.select_option("#kec", "Wajo")
    assert cards.evaluate_all(order) == want[:4]
