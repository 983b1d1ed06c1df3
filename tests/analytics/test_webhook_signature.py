"""Signed webhook notifications (issue 14 item 23): every POST carries ``X-Lorong-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` keyed with ``analytics.webhook_secret``.
A real local HTTP server receives what the outbox sends (built from settings, as the scheduler
does) and checks the signature with its own HMAC, as a receiver would."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from analytics.alerts import AlertBook, AlertChange
from analytics.notify import build_outbox
from analytics.notify_webhook import WebhookNotifier, verify_signature
from lorong.core.settings import AnalyticsSettings, Settings
from tests.analytics.test_scenarios import NOW

SECRET = "s3cret-shared-with-the-receiver"


class RawHook(BaseHTTPRequestHandler):
    """Records each request's headers and raw body; answers 200."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv: Any = self.server
        srv.requests.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def raw_hook() -> Iterator[Any]:
    """A real HTTP server on a free loopback port that keeps raw bodies."""
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), RawHook)
    srv.requests = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def receiver_check(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver writes from the README (independent of Lorong's code)."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    signed = f"{parts['t']}.".encode() + body
    want = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"]) and abs(now - int(parts["t"])) <= tolerance_s


def test_outbox_webhook_posts_are_signed(sessions: Any, raw_hook: Any, make_settings: Any) -> None:
    url = f"http://127.0.0.1:{raw_hook.server_address[1]}/alerts"
    settings: Settings = make_settings(analytics=AnalyticsSettings(webhook_url=url, webhook_secret=SecretStr(SECRET)))
    with sessions.begin() as s:
        AlertBook(s, channels=["webhook"]).raise_("B1", "bin_full", "major", NOW, {"fillingLevel": 0.9}, "Wajo")
    outbox = build_outbox(settings, sessions)
    try:
        assert outbox.dispatch().sent.get("webhook") == 1
    finally:
        outbox.close()
    [(headers, body)] = raw_hook.requests
    header = headers["X-Lorong-Signature"]
    now = time.time()
    assert receiver_check(SECRET, header, body, now)
    assert verify_signature(SECRET, header, body, now=now)
    assert not receiver_check("another secret", header, body, now)
    tampered = body.replace(b"major", b"minor")
    assert tampered != body and not verify_signature(SECRET, header, tampered, now=now)
    assert not verify_signature(SECRET, header, body, now=now + 301)  # replayed 5 min later
    assert not verify_signature(SECRET, "garbage", body, now=now)


def test_direct_notifier_posts_are_signed(raw_hook: Any) -> None:
    url = f"http://127.0.0.1:{raw_hook.server_address[1]}/alerts"
    notifier = WebhookNotifier(url, attempts=1, secret=SECRET)
    try:
        notifier(AlertChange(7, "opened", {"id": 7, "type": "fire", "device_id": "F1", "updated_at": NOW.isoformat()}))
    finally:
        notifier.close()
    [(headers, body)] = raw_hook.requests
    assert receiver_check(SECRET, headers["X-Lorong-Signature"], body, time.time())
    unsigned = WebhookNotifier(url, attempts=1)
    try:
        unsigned(AlertChange(8, "opened", {"id": 8, "type": "fire", "device_id": "F1", "updated_at": NOW.isoformat()}))
    finally:
        unsigned.close()
    assert "X-Lorong-Signature" not in raw_hook.requests[1][0]  # no secret set: nothing to sign with
