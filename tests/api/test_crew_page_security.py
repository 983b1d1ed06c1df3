"""Crew page security headers (issue 14 item 15), in Debian's headless Chromium: a page on another
origin cannot frame the logged-in app, and the page's own scripts, styles and map still work under
its Content-Security-Policy (no violation reported)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.model import utcnow
from lorong.storage import stack
from tests.api.conftest import Served
from tests.api.seed import fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page that reaches loopback only (map tiles are refused at once)."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844})

    def offline(route: Route) -> None:
        if route.request.url.startswith(("http://127.0.0.1:", "http://localhost:")):
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", offline)
    p = ctx.new_page()
    p.set_default_timeout(10_000)
    yield p
    ctx.close()


def _framing_site(target: str) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server on another origin (``localhost``, another port) whose page frames ``target``."""
    html = (f'<!doctype html><title>prize</title><h1>Win a prize</h1>'
            f'<iframe id="victim" src="{target}" width="390" height="600"></iframe>').encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            pass

    port = stack.free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{port}/"


def test_headers_on_page_assets_and_json(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        for path in ("/", "/web/app.js", "/web/app.css", "/bins", "/health", "/no/such/path"):
            h = c.get(path).headers
            csp = h.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, csp)
            assert "'unsafe-inline'" not in csp, path
            assert h.get("x-frame-options") == "DENY", path
            assert h.get("x-content-type-options") == "nosniff", path
            assert h.get("referrer-policy") == "no-referrer", path
        docs = c.get("/docs").headers  # Swagger UI needs its inline script: framing still refused
        assert "frame-ancestors 'none'" in docs["content-security-policy"] and docs["x-frame-options"] == "DENY"


def test_another_origin_cannot_frame_the_crew_page(page: Page, served: Served) -> None:
    server, url = _framing_site(served.url + "/")
    try:
        page.goto(url)
        expect(page.locator("h1")).to_have_text("Win a prize")
        page.wait_for_timeout(500)  # the frame's navigation has finished (or was blocked) by now
        frame = page.frame_locator("#victim")
        expect(frame.locator("#login")).to_have_count(0)
        child = [f for f in page.frames if f != page.main_frame]
        assert len(child) == 1
        assert not child[0].url.startswith(served.url), child[0].url  # Chromium shows its error page instead
    finally:
        server.shutdown()
        server.server_close()


def test_crew_page_works_under_its_policy(page: Page, served: Served, sessions: sessionmaker[Session],
                                          tokens: dict[str, str]) -> None:
    fleet(sessions, utcnow())
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: violations.append(str(exc)))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective + ' '"
                         " + e.blockedURI))")
    page.goto(served.url + "/")
    page.fill("#token", tokens["crew"])
    page.click("#login button[type=submit]")
    page.click("#tab-alerts")
    expect(page.locator("[data-alert-id]")).to_have_count(2)  # the crew's two bin alerts, drawn by app.js
    assert page.locator("header.bar").evaluate("e => getComputedStyle(e).display") == "flex"  # app.css applied
    # the service worker (worker-src falls back to script-src 'self') registers under the policy
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.active !== null)") is True
    page.click("#tab-map")
    expect(page.locator("path.bin-marker")).to_have_count(4)  # Leaflet loaded and drew under the policy
    legend = page.locator(".legend i").evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len(legend) == 5 and len(set(legend)) == 5 and "rgba(0, 0, 0, 0)" not in legend, legend
    assert violations == [], violations


