"""Security headers on every response: the crew page may not be framed, sniffed or fed foreign scripts.

Every response carries:

- ``Content-Security-Policy`` (W3C CSP Level 3): :data:`CSP` everywhere except the interactive docs,
  which get :data:`DOCS_CSP` (Swagger UI and ReDoc load their scripts from a CDN and start with an
  inline script, so the strict policy would blank them; they still may not be framed).
  :data:`CSP` allows scripts, styles, fetches and fonts only from the API's own origin, images from
  it, ``data:`` and the OpenStreetMap tile server the crew map draws, and no inline script or
  ``style`` attribute (the crew page has none; styles set from script through the CSSOM, as Leaflet
  does, are not inline markup and keep working). ``frame-ancestors 'none'`` stops any page, on
  this site or another, from framing the logged-in page and its Ack/Clear buttons (clickjacking).
- ``X-Frame-Options: DENY`` (RFC 7034) for browsers older than CSP ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff`` (WHATWG Fetch): a JSON answer is never run as a script.
- ``Referrer-Policy: no-referrer`` (W3C Referrer Policy): the page's address (and any query in it)
  is not sent to the tile server.

A header the app already set on a response is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https://tile.openstreetmap.org; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
"""Policy of the crew page, its assets and every JSON answer."""

DOCS_CSP = "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
"""Policy of ``/docs`` and ``/redoc``: not framable, scripts as FastAPI's pages load them."""

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
"""Paths served by FastAPI's interactive documentation."""

COMMON = ((b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
          (b"referrer-policy", b"no-referrer"))
"""The headers every response gets besides the CSP."""


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding the headers of the module docstring to every HTTP response.

    Args:
        app: the wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope.get("path") in DOCS_PATHS else CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in ((b"content-security-policy", csp), *COMMON):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
