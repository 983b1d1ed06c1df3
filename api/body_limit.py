"""The request-body limit as pure ASGI middleware: it counts the bytes that arrive, so a body sent
with ``Transfer-Encoding: chunked`` (no ``Content-Length``, RFC 9112 section 6.1) is held to the
same limit as one that declares its length.

- A declared ``Content-Length`` over the limit is answered 413 before the app runs.
- Otherwise every ``http.request`` message the app receives is counted; at the first one that
  takes the total over the limit the middleware answers 413 itself (``Connection: close``, so the
  server stops reading the upload) and raises :class:`BodyTooLarge` into the app, whose own
  response, if any, is dropped. The rest of the body is never read, so memory stays bounded by the
  limit plus one chunk.

Both 413s have the API's error shape ``{"detail": message}`` (RFC 9110 section 15.5.14).
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised into the app when the body it is reading goes over the limit (already answered 413)."""


def _too_large(detail: str) -> tuple[Message, Message]:
    """The two ASGI messages of a 413 JSON response with ``detail``."""
    body = json.dumps({"detail": detail}).encode()
    start: Message = {"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class BodyLimitMiddleware:
    """Answer 413 to any HTTP request whose body is over ``max_bytes``, declared or streamed.

    Args:
        app: the ASGI app to guard.
        max_bytes: the largest body accepted, in bytes (the body itself, after chunked decoding).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body; see the module docstring."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            for message in _too_large(f"request body of {int(length)} bytes is over the limit of "
                                      f"{self.max_bytes} bytes"):
                await send(message)
            return

        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        refused = True
                        for out in _too_large(f"request body is over the limit of {self.max_bytes} bytes"):
                            await send(out)
                    raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; whatever the app answers to the error is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception as exc:
            if not refused:
                raise
            log.debug("body over the limit; the app stopped with %s", type(exc).__name__)
