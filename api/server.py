"""The HTTP server under the API: uvicorn with a bound on the time a client may take to send its
request headers (slowloris).

uvicorn 0.55 with h11 has no header timeout: ``timeout_keep_alive`` only runs between requests
and stops at the first byte of the next one, so a client that sends a request line and then one
header byte every few seconds holds its connection (and a file descriptor) for as long as it
likes; 300 such sockets stayed open past 45 s. :class:`HeaderTimeoutProtocol` starts a timer when
a connection opens and again when a response completes (the next request on a kept-alive
connection), stops it once h11 has the whole request head, and when it fires first answers
``408 Request Timeout`` (RFC 9110 section 15.5.9) and closes the connection. Request bodies are
bounded elsewhere (:mod:`api.body_limit`). A reverse proxy in front (nginx ``client_header_timeout``,
``client_body_timeout``, ``limit_conn``) is still the place for limits per client address; see
README "Security and hardening".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
"""Default seconds from connection (or end of the previous response) to a complete request head;
nginx's ``client_header_timeout`` default is 60 s, Apache ``mod_reqtimeout`` allows 20-40 s; a phone
on a slow 3G link sends a 1 kB request head well within 10 s."""


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout of ``header_timeout_s`` seconds.

    Use :func:`header_timeout_protocol` to get a class with another timeout (uvicorn takes a class).
    """

    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # closed already, or the head arrived and a request is under way
        log.debug("request headers not complete within %.0f s from %s: connection closed",
                 self.header_timeout_s, self.client)
        try:
            self.transport.write(self.conn.send(h11.Response(
                status_code=408, headers=[(b"content-length", b"0"), (b"connection", b"close")])))
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            pass  # h11 cannot answer in this state: just close
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Open the connection and start the head timer."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed h11; the head timer stops once a whole request head is parsed."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        """As uvicorn, then time the next request's head on this kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head timer, then as uvicorn."""
        self._disarm()
        super().connection_lost(exc)


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """A :class:`HeaderTimeoutProtocol` subclass whose head timeout is ``seconds`` (> 0)."""
    if seconds <= 0:
        raise ValueError("the request-head timeout must be positive")
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": float(seconds)})
