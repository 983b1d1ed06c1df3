"""Rendered JSON pages of a snapshot, kept for about a second per query.

At a few hundred requests a second most of them ask for the same few pages (every crew phone
polls ``/alerts`` and ``/bins?kecamatan=...``). Rendering a 100-item page to JSON and gzip costs
~1.5 ms of CPU on the development machine, so the result is kept per query for ``ttl_s`` (1 s) and
as long as the snapshot it came from is the current one. Values that depend on the clock
(``stale``, ``timeToFull_h``) are at most ``ttl_s`` old. ``ttl_s`` 0 turns the cache off.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from fastapi import Response

GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 5
"""zlib level 5: ~90 % smaller JSON at half the CPU of level 9."""


@dataclass
class _Page:
    source: object
    expires: float
    body: bytes
    headers: dict[str, str]
    gzipped: bytes | None = None


class PageCache:
    """Pages by query key; a page is reused while it is younger than ``ttl_s`` and ``source`` is unchanged.

    Args:
        ttl_s: seconds a rendered page is reused; 0 turns the cache off.
        max_pages: pages kept at most (the oldest are dropped first).
    """

    def __init__(self, ttl_s: float = 1.0, max_pages: int = 512) -> None:
        self.ttl_s = ttl_s
        self.max_pages = max_pages
        self._pages: dict[Hashable, _Page] = {}

    def respond(self, key: Hashable, source: object, accept_encoding: str,
                render: Callable[[], tuple[bytes, dict[str, str]]]) -> Response:
        """A JSON response for ``key``: cached, or ``render()`` (body and extra headers) now.

        Args:
            key: the query (path and parameters).
            source: the snapshot list the page is cut from; a new snapshot means a new page.
            accept_encoding: the request's ``Accept-Encoding``; gzip is sent when it allows it.
            render: makes the body bytes and extra headers.
        """
        now = time.monotonic()
        page = self._pages.get(key)
        if page is None or page.source is not source or page.expires < now:
            body, headers = render()
            page = _Page(source, now + self.ttl_s, body, headers)
            if self.ttl_s > 0:
                if len(self._pages) >= self.max_pages:
                    self._pages.pop(next(iter(self._pages)))
                self._pages[key] = page
        if "gzip" in accept_encoding and len(page.body) >= GZIP_MIN_BYTES:
            if page.gzipped is None:
                page.gzipped = gzip.compress(page.body, GZIP_LEVEL, mtime=0)
            headers = {**page.headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            return Response(page.gzipped, media_type="application/json", headers=headers)
        return Response(page.body, media_type="application/json", headers=page.headers)
