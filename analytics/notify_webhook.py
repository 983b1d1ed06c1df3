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

A receiver that is down would hold the job for every change (five tries with backoff each), so
after a change fails all its tries the notifier stays "open" for ``cooldown_s``: changes in
that time fail at once (:class:`WebhookDown`) and are logged, not sent.
"""

from __future__ import annotations

import json
import time

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from analytics.alerts import AlertChange
from analytics.outbox import DeliveryRefused, OutboxMessage

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

    Raises:
        httpx.HTTPStatusError: (call) a 4xx other than 429.
        RetryableStatus, httpx.TransportError: (call) still failing after ``attempts`` tries.
        WebhookDown: (call) within ``cooldown_s`` of such a failure.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 5, backoff_s: float = 0.5,
                 headers: dict[str, str] | None = None, cooldown_s: float = 60.0) -> None:
        self.url = url
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._http = httpx.Client(timeout=timeout_s, headers=headers)
        self._retrying = Retrying(stop=stop_after_attempt(attempts),
                                  wait=wait_exponential(multiplier=backoff_s, max=30),
                                  retry=retry_if_exception_type((httpx.TransportError, RetryableStatus)),
                                  reraise=True)

    def _post(self, body: bytes, key: str) -> None:
        resp = self._http.post(self.url, content=body,
                               headers={"Content-Type": "application/json", "Idempotency-Key": key})
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableStatus(f"webhook {self.url}: HTTP {resp.status_code}")
        resp.raise_for_status()

    def __call__(self, change: AlertChange) -> None:
        """Deliver one change (see the class for errors)."""
        if time.monotonic() < self._down_until:
            raise WebhookDown(f"webhook {self.url} failed less than {self.cooldown_s:.0f} s ago")
        body = json.dumps({"action": change.action, "alert": change.alert}).encode()
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
    """

    def __init__(self, url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.url = url
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
            resp = self._http.post(self.url, content=message.payload.encode(),
                                   headers={"Content-Type": "application/json", "Idempotency-Key": key})
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
