"""Findings of a crew member's play-test on 360x740 and 412x915 phones (touch) against the demo, each
checked in Debian's headless Chromium against the real API: "Change token" tapped by mistake with
nothing queued, a tick that looks sent while it is still on the phone, a banner that says "waiting
for signal" while a slow signal is sending, and touch targets under 44 CSS px."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, CDPSession, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Served
from tests.api.relay import Relay
from tests.api.seed import add_bin
from tests.api.test_crew_day import collections, seed_city
from tests.api.test_crew_fixes import dismiss_next_dialog, login, queued
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.integration

SIZES = [(360, 740), (412, 915)]
"""Two common Android phones in CSS px: a small one (e.g. Samsung Galaxy A-series at 360 dp wide) and a
large one (412 dp, e.g. Pixel)."""

MIN_TARGET_PX = 44
"""Smallest touch target, CSS px: WCAG 2.1 success criterion 2.5.5 (Target Size, 44 by 44 CSS px); Android's
Material guidance asks 48 dp, Apple's HIG 44 pt. A gloved or wet thumb in an alley misses smaller ones."""


def open_phone(browser: Browser, width: int, height: int) -> Page:
    """A touch phone page of ``width`` x ``height`` CSS px in Bahasa Indonesia, clock in Makassar."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=2, is_mobile=True,
                              has_touch=True, locale="id-ID", timezone_id="Asia/Makassar")
    ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1:") else r.abort())
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    return page


@pytest.fixture(params=SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def small_phone(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A phone page at each of :data:`SIZES`."""
    page = open_phone(browser, *request.param)
    yield page
    page.context.close()


@pytest.fixture
def phone360(browser: Browser) -> Iterator[Page]:
    """A 360x740 touch phone page."""
    page = open_phone(browser, 360, 740)
    yield page
    page.context.close()


def test_change_token_asks_even_with_nothing_queued(phone360: Page, served: Served,
                                                    sessions: sessionmaker[Session], tokens: dict[str, str]) -> None:
    """A thumb on "Ganti token" by mistake must not wipe the token: only the admin can give it again."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    expect(page.locator("#stops li.stop")).to_have_count(4)
    assert queued(page) == 0

    asked = dismiss_next_dialog(page)
    page.locator("#logout").tap()
    expect(page.locator("#app")).to_be_visible()
    assert asked and "token" in asked[0] and "admin" in asked[0], asked
    assert page.evaluate("localStorage.getItem('lorong.token')") == tokens["crew"]
    expect(page.locator("#stops li.stop")).to_have_count(4)

    page.once("dialog", lambda d: d.accept())  # said yes: the login form, nothing kept
    page.locator("#logout").tap()
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("localStorage.getItem('lorong.token')") is None


def no_signal(page: Page, relay: Relay, off: bool) -> None:
    """Take the phone's signal away (``off``) or give it back: the context's offline switch, and the
    :class:`Relay` the page talks through stops answering. The relay is the ground truth: after a reload
    under the offline switch alone, a request through the service worker's network fallback now and then
    still reached the server (Chromium 156)."""
    if off:
        relay.hang = True
        page.context.set_offline(True)
    else:  # the relay first: the page sends its queue as soon as it hears "online"
        relay.answer_again()
        page.context.set_offline(False)


def _throttle(cdp: CDPSession, latency_ms: float) -> None:
    """Slow every request by ``latency_ms`` (DevTools protocol, Network.emulateNetworkConditions)."""
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency_ms,
                                                  "downloadThroughput": -1, "uploadThroughput": -1})


def test_unsent_tick_says_so_until_the_server_has_it(phone360: Page, relay: Relay, sessions: sessionmaker[Session],
                                                    tokens: dict[str, str]) -> None:
    """A stop emptied without signal is ticked at once, and says it is still only on the phone; after a
    reload without signal too; the mark goes once the server has it. An acknowledgement the same."""
    seed_city(sessions)
    page = phone360
    page.goto(f"http://127.0.0.1:{relay.port}/")
    page.fill("#token", tokens["crew"])
    page.locator("#login button[type=submit]").tap()
    stop = page.locator("li[data-stop-id=MKS-BIN-0001]")
    expect(stop.locator("button.emptied")).to_be_visible()
    expect(stop.locator(".unsent")).to_have_count(0)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    no_signal(page, relay, True)
    stop.locator("button.emptied").tap()
    expect(stop.locator(".status")).to_contain_text("Dikosongkan")
    expect(stop.locator(".unsent")).to_have_text("Belum terkirim, tersimpan di HP")
    expect(page.locator("#net")).to_contain_text(" WITA")  # "data pukul 10.16 WITA": the zone offline too
    page.locator("#tab-alerts").tap()
    card = page.locator("[data-type=tilt]")
    card.locator("button.ack").tap()
    expect(card.locator(".ackline")).to_contain_text("Ditangani oleh petugas CREW")
    expect(card.locator(".unsent")).to_have_text("Belum terkirim, tersimpan di HP")
    page.locator("#tab-route").tap()

    page.reload()  # mid-round, still no signal: the marks come back from the phone
    expect(stop.locator(".unsent")).to_have_text("Belum terkirim, tersimpan di HP")
    page.locator("#lang").tap()
    expect(stop.locator(".unsent")).to_have_text("Not sent yet, kept on this phone")
    page.locator("#lang").tap()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "crew_alley_unsent.png"), full_page=True)
    assert collections(sessions, "MKS-BIN-0001") == 0

    no_signal(page, relay, False)
    expect(page.locator("#pending")).to_be_hidden()
    expect(stop.locator(".unsent")).to_have_count(0)
    expect(stop.locator(".status")).to_contain_text("Dikosongkan")
    page.locator("#tab-alerts").tap()
    expect(card.locator(".unsent")).to_have_count(0)
    expect(card.locator(".ackline")).to_contain_text("Ditangani oleh petugas CREW")
    assert collections(sessions, "MKS-BIN-0001") == 1


def test_slow_signal_says_sending_not_waiting(phone360: Page, served: Served, sessions: sessionmaker[Session],
                                             tokens: dict[str, str]) -> None:
    """With a slow but working signal (every request 2.5 s late, DevTools protocol throttling) the banner
    says the action is being sent, not that it waits for a signal the phone has."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    stop = page.locator("li[data-stop-id=MKS-BIN-0001]")
    expect(stop.locator("button.emptied")).to_be_visible()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    _throttle(cdp, 2500)
    stop.locator("button.emptied").tap()
    expect(page.locator("#pending")).to_have_text("Mengirim 1 tindakan…", timeout=2000)
    expect(stop.locator(".unsent")).to_have_text("Belum terkirim, tersimpan di HP")
    expect(page.locator("#toast")).to_have_text("Tercatat: sudah dikosongkan", timeout=8000)
    expect(page.locator("#pending")).to_be_hidden()
    expect(stop.locator(".unsent")).to_have_count(0)
    _throttle(cdp, 0)
    assert collections(sessions, "MKS-BIN-0001") == 1


LOADED = """() => {
  const api = performance.getEntriesByType('resource').filter((e) => /\\/(me|alerts|bins|routes)/.test(e.name));
  return api.reduce((n, e) => n + e.transferSize, 0);
}"""
"""Bytes the page's API answers took on the wire so far (compressed, headers included)."""


def test_a_slow_signal_that_keeps_bringing_bytes_loads_the_round(phone360: Page, served: Served,
                                                                 sessions: sessionmaker[Session],
                                                                 tokens: dict[str, str]) -> None:
    """A slow link (DevTools protocol: a download rate that makes the refresh take about 9 s, twice the
    page's 4.5 s no-signal limit) still brings the data: "no signal" is no byte for 4.5 s, not an answer
    slower than that. A whole city's bins took 7-13 s at 100-200 kbit/s and the page said "Tanpa sinyal"
    on a working link, for ever. The city has 1,500 more bins: Chromium's throttling hands a small answer
    over whole at the end, a large one as it comes, as a slow link does."""
    seed_city(sessions)
    with sessions.begin() as s:
        for i in range(1500):
            add_bin(s, f"MKS-BIN-9{i:04d}", lat=-5.13 + i * 1e-5)
    page = phone360
    login(page, served, tokens["crew"])
    expect(page.locator("#stops li.stop")).to_have_count(4)
    page.evaluate("performance.clearResourceTimings()")
    page.locator("#refresh").tap()
    expect(page.locator("#refresh")).not_to_have_attribute("aria-busy", "true")
    one_load = page.evaluate(LOADED)
    assert one_load > 10_000, one_load  # the city's bins: a large answer
    before = page.evaluate("JSON.parse(localStorage.getItem('lorong.data')).at")

    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": one_load / 9.0, "uploadThroughput": -1})
    started = page.evaluate("performance.now()")
    page.locator("#refresh").tap()
    expect(page.locator("#refresh")).not_to_have_attribute("aria-busy", "true", timeout=40_000)
    took_ms = page.evaluate("performance.now()") - started
    _throttle(cdp, 0)
    assert took_ms > 4500, took_ms  # slower than the no-signal limit: the case this test is about
    expect(page.locator("#net")).not_to_have_class(re.compile(r"\boff\b"))  # not "Tanpa sinyal"
    assert page.evaluate("JSON.parse(localStorage.getItem('lorong.data')).at") != before
    expect(page.locator("#stops li.stop")).to_have_count(4)


TARGETS = """() => {
  const out = [];
  for (const e of document.querySelectorAll('button, a, select, input, [role=tab]')) {
    const tap = e.matches('input[type=radio], input[type=checkbox]') ? e.closest('label') || e : e;
    const r = tap.getBoundingClientRect();
    if (!r.width || !r.height || getComputedStyle(tap).visibility === 'hidden') continue;  // not shown
    const name = `${e.id || e.className || e.tagName} "${e.textContent.trim().slice(0, 20)}"`;
    if (r.width < MIN || r.height < MIN) out.push(`${name} ${Math.round(r.width)}x${Math.round(r.height)}`);
  }
  return out;
}"""


def small_targets(page: Page) -> list[str]:
    """Visible tap targets smaller than :data:`MIN_TARGET_PX` either way (a radio: its label)."""
    out: list[str] = page.evaluate(TARGETS.replace("MIN", str(MIN_TARGET_PX)))
    return out


def test_touch_targets_big_enough_and_nothing_cut_off(small_phone: Page, served: Served,
                                                      sessions: sessionmaker[Session],
                                                      tokens: dict[str, str]) -> None:
    seed_city(sessions)
    page = small_phone
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.goto(served.url + "/")
    expect(page.locator("#login")).to_be_visible()
    seen = {"login": small_targets(page)}
    page.fill("#token", tokens["crew"])
    page.locator("#login button[type=submit]").tap()
    expect(page.locator("#stops li.stop")).to_have_count(4)
    seen["route"] = small_targets(page)
    page.locator("li[data-stop-id=MKS-BIN-0003] button.cant").tap()
    expect(page.locator("#ask")).to_be_visible()
    seen["can't empty"] = small_targets(page)
    page.locator("#ask-cancel").tap()
    page.locator("#tab-alerts").tap()
    expect(page.locator("[data-alert-id]").first).to_be_visible()
    seen["alerts"] = small_targets(page)
    page.screenshot(path=str(ARTIFACTS / f"crew_alley_alerts_{width}.png"), full_page=True)
    page.locator("#lang").tap()  # English words are longer in places ("Can't empty this bin")
    page.locator("#tab-route").tap()
    seen["route, English"] = small_targets(page)
    assert {k: v for k, v in seen.items() if v} == {}
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing pushed off the side
    clipped = page.evaluate("""() => [...document.querySelectorAll('#app button, #app .where, #app .meta, .bar *')]
      .filter(e => e.offsetWidth && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.trim())""")
    assert clipped == []
    page.screenshot(path=str(ARTIFACTS / f"crew_alley_route_en_{width}.png"), full_page=True)


def test_emptied_by_mistake_can_be_undone(phone360: Page, served: Served, sessions: sessionmaker[Session],
                                          tokens: dict[str, str]) -> None:
    """One tap on the wrong stop's "Sudah dikosongkan" (the cards look alike, the list moves up as a card
    closes) would record a pickup and clear the bin's full alerts for good. The toast offers "Urungkan" for
    a few seconds, before anything is sent; without it the pickup is sent as before."""
    seed_city(sessions)
    page = phone360
    login(page, served, tokens["crew"])
    wrong, right = page.locator("li[data-stop-id=MKS-BIN-0003]"), page.locator("li[data-stop-id=MKS-BIN-0001]")
    wrong.locator("button.emptied").tap()
    expect(wrong.locator(".status")).to_contain_text("Dikosongkan")
    undo = page.locator("#toast button.undo")
    expect(undo).to_have_text("Urungkan")
    box = undo.bounding_box()
    assert box and box["height"] >= MIN_TARGET_PX and box["width"] >= MIN_TARGET_PX
    expect(page.locator("#toast")).to_contain_text("MKS-BIN-0003")  # which bin it was, to catch the mistake
    bin_id = page.locator("#toast .nobreak")
    expect(bin_id).to_have_text("MKS-BIN-0003")
    assert bin_id.evaluate("e => e.getClientRects().length") == 1  # on one line, never "MKS-BIN-" / "0003"
    page.screenshot(path=str(ARTIFACTS / "crew_alley_undo.png"))
    undo.tap()
    expect(page.locator("#toast")).to_have_text("Dibatalkan: MKS-BIN-0003 belum dikosongkan")
    expect(wrong.locator("button.emptied")).to_be_visible()
    expect(wrong.locator(".status")).to_have_count(0)
    assert queued(page) == 0
    expect(page.locator("#route-summary")).to_contain_text("0 selesai")

    right.locator("button.emptied").tap()  # left alone: sent once the few seconds are over
    expect(page.locator("#toast")).to_have_text("Tercatat: sudah dikosongkan", timeout=10_000)
    assert collections(sessions, "MKS-BIN-0001") == 1
    page.wait_for_timeout(1000)
    assert collections(sessions, "MKS-BIN-0003") == 0
    page.reload()
    expect(wrong.locator("button.emptied")).to_be_visible()
    expect(right.locator(".status")).to_contain_text("Dikosongkan")

    page.context.set_offline(True)  # without signal the same: nothing queued after an undo
    wrong.locator("button.emptied").tap()
    page.locator("#toast button.undo").tap()
    expect(wrong.locator("button.emptied")).to_be_visible()
    assert queued(page) == 0
    expect(page.locator("#pending")).to_be_hidden()


def test_next_stop_is_marked_and_shown_on_open(phone360: Page, served: Served, sessions: sessionmaker[Session],
                                               tokens: dict[str, str]) -> None:
    """Mid-round, finished stops stay at the top of the list (a 360x740 screen holds about one and a half
    open stop cards): the page says which stop is next and opens on it, also after a reload."""
    seed_city(sessions)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {tokens['crew']}"}) as c:
        for device_id in ("MKS-BIN-0001", "MKS-BIN-0003", "MKS-BIN-0002"):  # stops 1-3, earlier in the round
            assert c.post(f"/bins/{device_id}/emptied", json={}).status_code == 200
    page = phone360
    login(page, served, tokens["crew"])
    nxt = page.locator("li[data-stop-id=MKS-BIN-0004]")
    expect(nxt.locator(".next")).to_have_text("Berikutnya")
    expect(page.locator("#stops .next")).to_have_count(1)
    expect(nxt.locator("button.emptied")).to_be_in_viewport()
    page.screenshot(path=str(ARTIFACTS / "crew_alley_next_stop.png"))

    page.evaluate("window.scrollTo(0, 0)")
    page.reload()
    expect(nxt.locator(".next")).to_have_text("Berikutnya")
    expect(nxt.locator("button.emptied")).to_be_in_viewport()
    page.locator("#lang").tap()
    expect(nxt.locator(".next")).to_have_text("Next")
    page.locator("#lang").tap()
    top = page.evaluate("scrollY")
    nxt.locator("button.emptied").tap()  # the last stop: no next one, and the list is not moved under the thumb
    expect(page.locator("#stops .next")).to_have_count(0)
    assert page.evaluate("scrollY") <= top
