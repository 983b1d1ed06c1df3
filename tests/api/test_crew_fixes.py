"""Findings of a crew's play-test on a 390 px phone, each checked in Debian's headless Chromium
against the real API: "Change token" with actions still queued, logging in without signal, how
finished and failed stops look, what an alert card says, and the order of the alerts."""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Served
from tests.api.test_crew_day import seed_city

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

    asked: list[str] = []

    def dismiss(d: Dialog) -> None:
        asked.append(d.message)
        d.dismiss()

    page.once("dialog", dismiss)
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
