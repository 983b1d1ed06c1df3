"""Drains the spool into InfluxDB in batches, with retry and backoff.

Retryable failures (network, HTTP 5xx: :class:`StoreUnavailable`) keep the batch and retry with
exponential backoff (0.25 s doubling to 10 s). A refused batch (HTTP 4xx: :class:`StoreRejected`)
is split in halves until the bad points are isolated; they go to the dead-letter store with
reason ``store_rejected`` and the rest is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from core.errors import StoreRejected, StoreUnavailable
from core.model import utcnow
from ingest.deadletter import DeadLetter
from storage.influx import InfluxClient
from storage.spool import Spool

log = logging.getLogger(__name__)


class SpoolWriter:
    """Background thread moving points from the spool to InfluxDB.

    Args:
        spool: the durable spool.
        influx: InfluxDB client.
        dead_letter: sink for points InfluxDB refuses.
        batch_size: points per write.
        idle_s: wait when the spool is empty.
        on_written: called with (points, seconds) after each successful write (self-metrics).
    """

    def __init__(self, spool: Spool, influx: InfluxClient, dead_letter: Callable[[Sequence[DeadLetter]], None],
                 batch_size: int = 5000, idle_s: float = 0.2,
                 on_written: Callable[[int, float], None] | None = None) -> None:
        self.spool = spool
        self.influx = influx
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.on_written = on_written
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self.down_since: float | None = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the writer new points are waiting."""
        self._wake.set()

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop after trying to drain the spool for up to ``drain_s`` seconds."""
        deadline = time.monotonic() + drain_s
        while self.spool.depth() and time.monotonic() < deadline and self.down_since is None:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            batch = self.spool.peek(self.batch_size)
            if not batch:
                self._wake.wait(self.idle_s)
                self._wake.clear()
                continue
            try:
                self._write(batch)
            except StoreUnavailable as exc:
                if self.down_since is None:
                    log.error("InfluxDB unavailable, keeping %d+ points in the spool: %s", len(batch), exc)
                    self.down_since = time.monotonic()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if self.down_since is not None:
                log.info("InfluxDB back after %.0f s", time.monotonic() - self.down_since)
                self.down_since = None
            backoff = 0.25

    def _write(self, batch: list[tuple[int, str]]) -> None:
        t0 = time.monotonic()
        try:
            self.influx.write_lines([line for _, line in batch])
        except StoreRejected:
            self._bisect(batch)
        self.spool.remove_through(batch[-1][0])
        if self.on_written:
            self.on_written(len(batch), time.monotonic() - t0)

    def _bisect(self, batch: list[tuple[int, str]]) -> None:
        """Write the good points of a refused batch; dead-letter the bad ones."""
        if len(batch) == 1:
            try:
                self.influx.write_lines([batch[0][1]])
            except StoreRejected as exc:
                log.warning("InfluxDB refused a point: %s", exc)
                self.dead_letter([DeadLetter("", batch[0][1].encode(), "store_rejected", str(exc), utcnow())])
            return
        mid = len(batch) // 2
        for half in (batch[:mid], batch[mid:]):
            try:
                self.influx.write_lines([line for _, line in half])
            except StoreRejected:
                self._bisect(half)
