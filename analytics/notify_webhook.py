"""Alert changes POSTed to a webhook as JSON: through the outbox (:class:`WebhookChannel`), or
directly with in-process retries (:class:`WebhookNotifier`, httpx + tenacity).

Outbox channel ``webhook``: one POST per try of the row's payload
``{"notification_id": ..., "action": ..., "alert": <snapshot>}`` with ``Idempotency-Key:
<notification_id>``; 2xx is delivered; 408, 429, 5xx and network errors are tried again later by
the outbox (:func:`analytics.outbox.backoff`); any other status is a refusal
(:class:`analytics.outbox.DeliveryRefused`), not retried (RFC 9110 section 15: a 4xx is the
client's fault, 408 and 429 say "try later").

Direct notifier (:class:`WebhookNotifier`): body ``{"action": ..., "alert": <snapshot>}``; header
``Idempotency-Key`` is the same on every retry of one change (``<alert id>:<action>:<updated_at>``)
so a receiver can drop duplicates (the IETF draft "The Idempotency-Key HTTP Header Field").
Retried: network errors, 429 and 5xx; any other 4xx is the receiver refusing the message and is
not retried.

Signature: with a secret (``analytics.webhook_secret``), every POST of both carries
``X-Lorong-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC (RFC 2104, SHA-256) keyed
with the secret over ``"<t>." + body`` (the bytes sent). A receiver recomputes it, compares in
constant time and refuses a ``t`` more than :data:`SIGNATURE_TOLERANCE_S` from its clock, so a
captured request cannot be replayed later (within the window, ``Idempotency-Key`` drops the
repeat). This is the scheme of Stripe's and Slack's webhooks; :func:`verify_signature` is the
receiver side, and README "Security and hardening" has a standalone snippet.

A receiver that is down would hold the job for every change (five tries with backoff each), so
after a change fails all its tries the notifier stays "open" for ``cooldown_s``: changes in
that time fail at once (:class:`WebhookDown`) and are logged, not sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from analytics.alerts import AlertChange
from analytics.outbox import DeliveryRefused, OutboxMessage
from lorong.core.alerts import payload_words

SIGNATURE_HEADER = "X-Lorong-Signature"
SIGNATURE_TOLERANCE_S = 300.0
"""Largest age (s) of a signature's timestamp a receiver should accept (Stripe's default, 5 min)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Lorong-Signature`` value of ``body``: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    Args:
        secret: the shared secret (``analytics.webhook_secret``).
        body: the exact bytes POSTed.
        timestamp: Unix seconds; default now.
    """
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None,
                     tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """True when ``header`` is a valid :func:`sign` of ``body`` made within ``tolerance_s`` of ``now``.

    Args:
        secret: the shared secret.
        header: the ``X-Lorong-Signature`` value received.
        body: the raw request body received.
        now: the receiver's Unix time; default now.
        tolerance_s: largest ``|now - t|`` accepted, seconds.
    """
    try:
        parts = dict(p.strip().split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        got = parts["v1"]
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    want = sign(secret, body, t).rsplit("v1=", 1)[1]
    return hmac.compare_digest(want, got) and abs(now - t) <= tolerance_s


def _signed(secret: str | None, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, SIGNATURE_HEADER: sign(secret, body)} if secret else headers


RETRY_LATER = frozenset({408, 429})
"""4xx statuses that mean "try again later" (RFC 9110 section 15.5.9, RFC 6585 section 4)."""


class RetryableStatus(Exception):
    """The webhook answered 429 or 5xx: try again."""


class WebhookDown(Exception):
    """The webhook failed recently; nothing is sent until the cool-down ends."""


class WebhookNotifier:
    """POSTs each alert change to ``url``.

    Args:
        url: the receiver.
        timeout_s: per-request timeout.
        attempts: tries per change (first one included).
        backoff_s: first wait between tries; doubles each time, capped at 30 s.
        headers: extra headers (e.g. an ``Authorization`` token).
        cooldown_s: after a change failed every try, later changes fail at once for this long.
        secret: when set, each POST is signed (``X-Lorong-Signature``, module docstring).

    Raises:
        httpx.HTTPStatusError: (call) a 4xx other than 429.
        RetryableStatus, httpx.TransportError: (call) still failing after ``attempts`` tries.
        WebhookDown: (call) within ``cooldown_s`` of such a failure.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 5, backoff_s: float = 0.5,
                 headers: dict[str, str] | None = None, cooldown_s: float = 60.0, secret: str | None = None) -> None:
        self.url = url
        self._secret = secret
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._retrying = Retrying(stop=stop_after_attempt(attempts),
                                  wait=wait_exponential(multiplier=backoff_s, max=30),
                                  retry=retry_if_exception_type((httpx.TransportError, RetryableStatus)),
                                  reraise=True)

    def _post(self, body: bytes, key: str) -> None:
        resp = self._http.post(self.url, content=body, headers=_signed(
            self._secret, body, {"Content-Type": "application/json", "Idempotency-Key": key}))
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableStatus(f"webhook {self.url}: HTTP {resp.status_code}")
        resp.raise_for_status()

    def __call__(self, change: AlertChange) -> None:
        """Deliver one change (see the class for errors)."""
        if time.monotonic() < self._down_until:
            raise WebhookDown(f"webhook {self.url} failed less than {self.cooldown_s:.0f} s ago")
        body = json.dumps({"action": change.action,
                           "alert": {**change.alert, **payload_words(str(change.alert.get("type")))}}).encode()
        key = f"{change.alert_id}:{change.action}:{change.alert.get('updated_at')}"
        try:
            for attempt in self._retrying:
                with attempt:
                    self._post(body, key)
        except (RetryableStatus, httpx.TransportError):
            self._down_until = time.monotonic() + self.cooldown_s
            raise

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class WebhookChannel:
    """Outbox channel ``webhook`` (:class:`analytics.outbox.Channel`): one POST per try.

    Args:
        url: the receiver.
        timeout_s: per-request timeout (connect, read, write, pool).
        headers: extra headers (e.g. an ``Authorization`` token).
        secret: when set, each POST is signed (``X-Lorong-Signature``, module docstring).
    """

    def __init__(self, url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None,
                 secret: str | None = None) -> None:
        self.url = url
        self._secret = secret
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    def send(self, message: OutboxMessage) -> None:
        """POST one outbox row.

        Raises:
            DeliveryRefused: the receiver answered a 3xx or a 4xx other than 408/429, or the
                payload has no ``notification_id``.
            ConnectionError: network error, timeout, 408, 429 or 5xx (try again later).
        """
        try:
            key = str(message.body["notification_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryRefused(f"notification {message.id}: bad payload: {exc!r}") from exc
        try:
            body = message.payload.encode()
            resp = self._http.post(self.url, content=body, headers=_signed(
                self._secret, body, {"Content-Type": "application/json", "Idempotency-Key": key}))
        except httpx.HTTPError as exc:
            raise ConnectionError(f"webhook {self.url}: {type(exc).__name__}: {exc}") from exc
        status = resp.status_code
        if 200 <= status < 300:
            return
        detail = f"webhook {self.url}: HTTP {status} {resp.text[:200]}".rstrip()
        if status >= 500 or status in RETRY_LATER:
            raise ConnectionError(detail)
        raise DeliveryRefused(detail)

    def __repr__(self) -> str:
        return f"WebhookChannel({self.url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
