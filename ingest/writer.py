"""Drains the spool into InfluxDB in batches, with retry and backoff.

What happens to a batch depends on why a write failed (InfluxDB 1.x HTTP API,
https://docs.influxdata.com/influxdb/v1/guides/write_data/#http-response-summary):

============================  ==============================================================
network error, timeout, 5xx   keep the batch, retry with exponential backoff (0.25 s doubling
                              to 10 s); nothing is dropped however long InfluxDB is away
404 ``database not found``    create the database (with the configured retention), retry
400 (bad point, field type    poison: split the batch in halves until the bad points are
conflict, beyond retention)   isolated, write the rest, dead-letter the bad ones as
413 (request too large)       ``store_rejected``
any other 4xx (401, 403...)   a setup problem, not the data's: keep the batch and retry
============================  ==============================================================

Points leave the spool only after InfluxDB took them or they are in the dead-letter store, so
a failure anywhere (a dead-letter database that is down, a crash mid-batch) means a retry of
the whole batch; InfluxDB overwrites a point with the same series and timestamp.

A spool that cannot delete what InfluxDB took (its disk is full even after its reserve went, see
:mod:`lorong.storage.spool`) does not stop the writer: it remembers how far it wrote, goes on with the
next points, logs the spool's disk as the cause (not InfluxDB, which stays "up"), and deletes the
written points as soon as the disk has room.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from ingest.deadletter import DeadLetter
from ingest.formats import device_in_topic
from lorong.core.errors import StoreRejected, StoreUnavailable
from lorong.core.model import Message, utcnow
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.25
MAX_BACKOFF_S = 10.0
POISON_STATUS = frozenset({400, 413})
"""HTTP statuses that blame the points themselves (split the batch)."""

class _NotPoison(StoreUnavailable):
    """A 4xx that is not the points' fault: keep the batch, retry later."""


class SpoolWriter:
    """Background thread moving points from the spool to InfluxDB.

    Args:
        spool: the durable spool.
        influx: InfluxDB client.
        dead_letter: durable sink for points InfluxDB refuses; it must raise when it could not
            store them (the batch is then retried).
        batch_size: points per write (InfluxDB recommends 5,000-10,000).
        idle_s: longest time a point waits for a full batch (s); points are written as soon as
            ``batch_size`` of them wait, so under load every write is a full batch.
        on_written: called with (points, seconds) after each successful write.
        on_refused: called with the number of points dead-lettered.
        retention: default retention of a database the writer has to create (``INF``, ``90d``).
    """

    def __init__(self, spool: Spool, influx: InfluxClient, dead_letter: Callable[[Sequence[DeadLetter]], None],
                 batch_size: int = 5000, idle_s: float = 0.2,
                 on_written: Callable[[int, float], None] | None = None,
                 on_refused: Callable[[int], None] | None = None, retention: str = "INF") -> None:
        self.spool = spool
        self.influx = influx
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.on_written = on_written
        self.on_refused = on_refused
        self.retention = retention
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self.down_since: float | None = None
        self.sent_through: int | None = None
        """Spool id up to which InfluxDB took the points that the spool could not delete yet."""
        self._pending_since: float | None = None
        self._draining = False

    @property
    def up(self) -> bool:
        """False while writes fail and the writer backs off."""
        return self.down_since is None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the writer new points are waiting."""
        self._wake.set()

    def stop(self, drain_s: float = 5.0, join_s: float = 30.0) -> None:
        """Stop, after trying to empty the spool for up to ``drain_s`` seconds while InfluxDB is up.

        What is left stays in the spool for the next start. ``join_s`` bounds the wait for a
        write in progress (an HTTP timeout is 10 s by default).
        """
        deadline = time.monotonic() + drain_s
        self._draining = True
        while self._thread.is_alive() and self.spool.depth() and self.up and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=join_s)

    def _ready(self) -> bool:
        """True when a write is due: a full batch waits, the oldest waiting point has lingered
        ``idle_s``, or the writer is draining. Otherwise it waits for a wake-up or the deadline."""
        depth = self.spool.depth()
        if depth == 0:
            self._pending_since = None
            self._wake.wait(self.idle_s)
            self._wake.clear()
            return False
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        left = self._pending_since + self.idle_s - now
        if depth >= self.batch_size or left <= 0 or self._draining:
            self._pending_since = None
            return True
        self._wake.wait(left)
        self._wake.clear()
        return False

    def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        while not self._stop.is_set():
            try:
                if not self._ready():
                    continue
                if self.sent_through is not None:
                    self._remove(self.sent_through)
                batch = self.spool.peek(self.batch_size, after=-1 if self.sent_through is None else self.sent_through)
                if batch:
                    self._write(batch)
                elif self.sent_through is not None:  # all written, none deletable: wait for room
                    self._stop.wait(MAX_BACKOFF_S)
            except Exception as exc:  # StoreUnavailable, a dead-letter store that is down, a full disk
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    if isinstance(exc, StoreUnavailable):
                        log.error("InfluxDB writes failing, keeping %d points in the spool: %s",
                                  self.spool.depth(), exc)
                    else:
                        log.exception("spool writer failed, keeping %d points in the spool", self.spool.depth())
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if self.down_since is not None:
                log.info("InfluxDB writes back after %.0f s, %d points in the spool",
                         time.monotonic() - self.down_since, self.spool.depth())
                self.down_since = None
            backoff = MIN_BACKOFF_S

    def _write(self, batch: list[tuple[int, str]]) -> None:
        t0 = time.monotonic()
        refused: list[tuple[int, str, str]] = []
        try:
            self._write_lines([x for _, x in batch])
        except StoreRejected:
            refused = self._bisect(batch)
        if refused:
            self.dead_letter(self._letters(refused))
            log.warning("InfluxDB refused %d of %d points; dead-lettered as store_rejected: %s",
                        len(refused), len(batch), refused[0][2][:300])
        self._remove(batch[-1][0])
        if refused and self.on_refused:
            self.on_refused(len(refused))
        if self.on_written:
            self.on_written(len(batch) - len(refused), time.monotonic() - t0)

    def _remove(self, last_id: int) -> None:
        """Delete the written entries through ``last_id``; when the spool's disk is full, remember
        ``last_id`` in :attr:`sent_through` instead (logged once) and try again on the next round."""
        try:
            self.spool.remove_through(last_id)
        except sqlite3.OperationalError as exc:
            if self.sent_through is None:
                log.error("spool %s cannot delete the points InfluxDB took: %s (%d bytes free on its disk); "
                          "writing the next ones, deleting when there is room (InfluxDB is fine)",
                          self.spool.path, exc, self.spool.free_bytes())
            self.sent_through = max(last_id, self.sent_through or -1)
            return
        if self.sent_through is not None and last_id >= self.sent_through:
            log.info("spool %s deletes again (%d bytes free)", self.spool.path, self.spool.free_bytes())
            self.sent_through = None

    def _letters(self, refused: list[tuple[int, str, str]]) -> list[DeadLetter]:
        """One ``store_rejected`` dead letter per message whose points InfluxDB refused: its topic,
        original payload and receive time, so that ``dead-letters replay`` can process it again
        once the cause is fixed. A point of no message (self-metrics, a spool of an earlier
        release) is kept as its line protocol with an empty topic."""
        origins = self.spool.origins([i for i, _, _ in refused])
        letters: list[DeadLetter] = []
        done: set[Message] = set()
        for i, point, why in refused:
            msg = origins.get(i)
            if msg is None:
                letters.append(DeadLetter("", point.encode(), "store_rejected", why[:2000], utcnow()))
            elif msg not in done:
                done.add(msg)
                letters.append(DeadLetter(msg.topic, msg.payload, "store_rejected",
                                          f"{why[:1500]} (point: {point[:400]})", msg.received_at,
                                          device_in_topic(msg.topic)))
        return letters

    def _write_lines(self, lines: list[str]) -> None:
        """One write; a missing database is created and the write repeated once.

        Raises:
            StoreRejected: a poison status (400, 413): the points are to blame.
            StoreUnavailable: retry later (network, 5xx, or a 4xx that is not the points' fault).
        """
        for attempt in (1, 2):
            try:
                self.influx.write_lines(lines)
                return
            except StoreRejected as exc:
                status = exc.status
                if status in POISON_STATUS:
                    raise
                if status == 404 and "database not found" in str(exc) and attempt == 1:
                    log.warning("InfluxDB database %r does not exist: creating it", self.influx.database)
                    try:
                        self.influx.create_database(self.retention)
                    except StoreRejected as cexc:
                        raise _NotPoison(f"cannot create database {self.influx.database!r}: {cexc}") from cexc
                    continue
                raise _NotPoison(f"InfluxDB refused a write (HTTP {status}), keeping the points: {exc}") from exc
        raise _NotPoison(f"InfluxDB database {self.influx.database!r} still missing after creating it")

    def _bisect(self, batch: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
        """Write the good points of a refused batch.

        Returns:
            ``(spool id, line, reason)`` of each point InfluxDB refused on its own.

        Raises:
            StoreUnavailable: InfluxDB went away meanwhile; nothing is dead-lettered yet.
        """
        if len(batch) == 1:
            try:
                self._write_lines([batch[0][1]])
            except StoreRejected as exc:
                return [(batch[0][0], batch[0][1], str(exc))]
            return []
        mid = len(batch) // 2
        refused: list[tuple[int, str, str]] = []
        for half in (batch[:mid], batch[mid:]):
            try:
                self._write_lines([x for _, x in half])
            except StoreRejected:
                refused += self._bisect(half)
        return refused
