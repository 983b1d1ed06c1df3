"""Fixtures for the API tests: the real app served by uvicorn on a free loopback port, on a fresh
SQLite database and a fresh InfluxDB database of the session's influxd, and one token per role."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Route, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Role, create_token
from api.main import create_app
from lorong.core.settings import Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.api.relay import Relay

ROLES = [r.value for r in Role]


class Served:
    """A running API: ``url`` and a way to stop it."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.port = stack.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        kwargs.setdefault("bins_ttl_s", 0.0)  # tests write to SQL between requests: no snapshot reuse,
        kwargs.setdefault("alerts_ttl_s", 0.0)  # and no page cache
        kwargs.setdefault("page_ttl_s", 0.0)
        self.app = create_app(settings, **kwargs)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        stack.wait_for_port(self.port, 10)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it (bounded)."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(settings: Settings, **kwargs: Any) -> Served:
    """Start the API for ``settings`` (kwargs go to :func:`create_app`)."""
    return Served(settings, **kwargs)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], influx: InfluxClient) -> Settings:
    """Settings on the test database and InfluxDB (no broker: /health reports it down; the MQTT port
    is a free one, not 1883, where a broker of another program may listen)."""
    return make_settings(mqtt_port=stack.free_port(), influx=influx)


@pytest.fixture
def tokens(sessions: sessionmaker[Session]) -> dict[str, str]:
    """One plain token per role: ``{"crew": "lrg_...", ...}``; the name is the role in capitals."""
    out: dict[str, str] = {}
    with sessions.begin() as s:
        for role in ROLES:
            out[role] = create_token(s, role.upper(), role)[1]
    return out


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    """The API on a free loopback port."""
    srv = serve(settings)
    yield srv
    srv.stop()


@pytest.fixture
def client(served: Served, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    """An httpx client on the served API, with no token."""
    with httpx.Client(base_url=served.url, timeout=10) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(tokens: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """``auth("crew")`` -> headers with the crew token."""
    return lambda role: bearer(tokens[role])


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


@pytest.fixture
def relay(served: Served) -> Iterator[Relay]:
    """A :class:`tests.api.relay.Relay` in front of the served API."""
    r = Relay(served.port)
    yield r
    r.close()
