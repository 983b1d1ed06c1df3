"""An in-memory snapshot of a database query, shared by the requests of one API process.

Used where a hot list endpoint would otherwise run the same query hundreds of times a second:
every bin sorted by fill level (:mod:`api.bin_state`) and the active alerts (:mod:`api.alert_state`).

Freshness rules, with ``age`` the time since the snapshot's query started:

- ``age <= ttl_s``: served as is;
- ``ttl_s < age <= max_age_s``: served as is while one background thread reloads it;
- ``age > max_age_s``, never loaded, or invalidated: reloaded before answering, once for all the
  requests waiting for it;
- ``ttl_s <= 0``: reloaded for every call (tests).

Writes made through this API call :meth:`Snapshot.invalidate`, so their effect shows at once in this
process; other writers (the analytics job, another API process) show within ``ttl_s`` plus one reload.

A background reload is CPU work in Python and shares the interpreter lock with the event loop: done
in one go, 0.3 s of it for 5,000 bins starved the loop and pushed ~1 s of requests past 40 ms (measured
with bench/api_latency.py). So loaders take a ``pause`` callable and call it between chunks of rows;
in the background it sleeps :data:`PAUSE_S`, handing the lock to the loop; in a reload that callers
wait for it does nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from fastapi.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

T = TypeVar("T")
Pause = Callable[[], None]
PAUSE_S = 0.004
"""Sleep between chunks of a background reload (s)."""


def _no_pause() -> None:
    return None


def _pause() -> None:
    time.sleep(PAUSE_S)


class Snapshot(Generic[T]):
    """The result of ``load()``, kept and refreshed by the rules in the module docstring.

    Args:
        name: for logs and the refresh thread's name.
        load: runs the query, calling ``pause()`` between chunks of rows; returns the items (the
            snapshot never mutates them).
        ttl_s: age up to which the snapshot is served without a reload; <= 0 reloads on every call.
        max_age_s: age beyond which callers wait for a reload.
    """

    def __init__(self, name: str, load: Callable[[Pause], list[T]], ttl_s: float, max_age_s: float) -> None:
        self.name = name
        self._load = load
        self.ttl_s = ttl_s
        self.max_age_s = max(max_age_s, ttl_s)
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._items: list[T] | None = None
        self._built = 0.0
        self._generation = 0
        self._refreshing = False

    def must_reload(self) -> bool:
        """True when :meth:`items` would reload before answering."""
        return self._items is None or self.ttl_s <= 0 or time.monotonic() - self._built > self.max_age_s

    def _store(self, items: list[T], generation: int, started: float) -> None:
        with self._lock:
            if generation == self._generation:  # not invalidated while loading
                self._items, self._built = items, started

    def items(self) -> list[T]:
        """The current snapshot (blocking while a needed reload runs)."""
        while True:
            if self.must_reload():
                with self._build_lock:  # one reload for every waiting caller
                    items = self._items
                    if items is None or self.must_reload():
                        started, generation = time.monotonic(), self._generation
                        items = self._load(_no_pause)
                        self._store(items, generation, started)
                    return items
            items, age = self._items, time.monotonic() - self._built
            if items is not None:
                break
        if age > self.ttl_s:
            with self._lock:
                start, self._refreshing = not self._refreshing, True
            if start:
                threading.Thread(target=self._refresh, name=f"{self.name}-snapshot", daemon=True).start()
        return items

    async def aitems(self) -> list[T]:
        """:meth:`items` for async code: a reload that must finish first runs in a worker thread."""
        if self.must_reload():
            return await run_in_threadpool(self.items)
        return self.items()

    def _refresh(self) -> None:
        started, generation = time.monotonic(), self._generation
        try:
            self._store(self._load(_pause), generation, started)
        except Exception:  # keep serving the old snapshot; the next caller tries again
            log.exception("%s snapshot reload failed", self.name)
        finally:
            with self._lock:
                self._refreshing = False

    def invalidate(self) -> None:
        """Drop the snapshot (after a write); the next caller reloads it."""
        with self._lock:
            self._generation += 1
            self._items = None
