"""The running ingester: MQTT source -> pipeline -> spool (then ack) -> writer -> InfluxDB.

Delivery contract (every byte accounted for):

1. the source's loop thread (:mod:`ingest.mqtt_source`, or :mod:`ingest.nats_source` with
   ``LORONG_INGEST__SOURCE=nats``) runs :meth:`Ingester._on_message`: the pipeline turns the message
   into points or a rejection, which wait in memory with the message's ack token.
2. The flush thread (every 50 ms, or at once when :data:`FLUSH_AT` messages wait) appends the
   points to the SQLite spool and the rejections to the dead-letter store, both durable, and
   only then sends the PUBACKs, in arrival order. If either store fails, nothing is acked and
   everything stays queued in memory for the next attempt; the broker stops sending once
   ``Receive Maximum`` messages are unacknowledged, so memory stays bounded.
3. The writer thread moves the spool into InfluxDB (:mod:`ingest.writer`).

A crash at any point loses nothing: what was not acked is redelivered by the broker (the
session is persistent; with NATS, the durable consumer delivers it again after its ack wait),
what was acked is in the spool, and a second copy of a point rewrites
the same series and timestamp in InfluxDB.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.metrics import IngestMetrics, Stats
from ingest.mqtt_source import MqttSource
from ingest.pipeline import DeviceLookup, Pipeline
from ingest.validate import Policy
from ingest.writer import SpoolWriter
from lorong.core.model import Message, to_ms, utcnow
from lorong.core.settings import Settings
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool

__all__ = ["FLUSH_AT", "FLUSH_PERIOD_S", "Ingester", "Stats"]

log = logging.getLogger(__name__)

FLUSH_PERIOD_S = 0.05
"""Longest time a received message waits in memory before the spool and its ack (s)."""

FLUSH_AT = 1024
"""Messages waiting in memory that trigger a flush at once (a quarter of Receive Maximum)."""

_MAX_RETRY_S = 5.0


def spool_name(client_id: str) -> str:
    """Spool file name of the ingester with MQTT client id ``client_id``, made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", client_id) + ".sqlite"


def spool_path_for(settings: Settings) -> str:
    """Spool file name of this ingester: its MQTT client id, made safe for a file name."""
    return spool_name(settings.mqtt.client_id)


class Source(Protocol):
    """What the ingester needs of a message source (:class:`ingest.mqtt_source.MqttSource`,
    :class:`ingest.nats_source.NatsSource`): it calls ``on_message(message, delivery)`` in its own
    thread and takes the ``delivery`` tokens back in :meth:`ack_many` once they are durable."""

    subscribed: threading.Event

    def start(self) -> None: ...
    def pause(self) -> None: ...
    def stop(self) -> None: ...
    def ack_many(self, deliveries: Iterable[Any]) -> int: ...


def make_source(settings: Settings, on_message: Callable[[Message, Any], None]) -> Source:
    """The source chosen by ``ingest.source``: ``mqtt`` (default) or ``nats``."""
    if settings.ingest.source == "nats":
        from ingest.nats_source import NatsSource  # nats-py only where it is used

        return NatsSource(settings, on_message)
    return MqttSource(settings.mqtt, on_message)


class Ingester:
    """Wires the parts together; :meth:`start` and :meth:`stop` are all a caller needs.

    Args:
        settings: Lorong settings (broker, InfluxDB, ingest tuning).
        devices: registry lookup.
        dead_letters: dead-letter store.
        influx: InfluxDB client (the database is created at start, or by the writer later if
            InfluxDB is down at start).

    Raises:
        lorong.storage.spool.SpoolBusy: another process runs with the same MQTT client id.
    """

    def __init__(self, settings: Settings, devices: DeviceLookup, dead_letters: DeadLetterStore,
                 influx: InfluxClient) -> None:
        cfg = settings.ingest
        self.settings = settings
        self.pipeline = Pipeline(devices, Policy(cfg.max_future_s, cfg.min_year),
                                 max_payload_bytes=cfg.max_payload_bytes, keep_readings=False,
                                 rx_slot=(cfg.rx_slot, cfg.rx_slots))
        self.dead_letters = dead_letters
        self.influx = influx
        self.spool = Spool(cfg.spool_dir / spool_path_for(settings))
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._lines: list[str] = []
        self._origins: list[Message | None] = []  # the message of each line in _lines
        self._dead: list[DeadLetter] = []
        self._acks: list[Any] = []
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._reject_logged: set[str] = set()
        self.source: Source = make_source(settings, self._on_message)
        self.writer = SpoolWriter(self.spool, influx, dead_letters.add_many, cfg.batch_size,
                                  idle_s=cfg.flush_interval_s, retention=settings.influx.retention)
        self.metrics = IngestMetrics(cfg.instance, self.spool.depth, lambda: self.writer.up,
                                     self.source.subscribed.is_set, spool_free=self.spool.free_bytes)
        self.writer.on_written = self.metrics.written
        self.writer.on_refused = self._refused
        self.metrics_port: int | None = None
        self._stopped = False
        self._flusher = threading.Thread(target=self._flush_loop, name="ingest-flush", daemon=True)

    @property
    def stats(self) -> Stats:
        """Counters since start (see :class:`ingest.metrics.Stats`)."""
        return self.metrics.stats

    def _refused(self, points: int) -> None:
        self.metrics.stats.refused_points += points

    def _on_message(self, msg: Message, delivery: Any) -> None:
        result = self.pipeline.process(msg)
        stats = self.metrics.stats
        with self._lock:
            stats.received += 1
            if result.error is not None:
                reason = result.error.reason
                stats.rejected[reason] += 1
                self._dead.append(DeadLetter(msg.topic, msg.payload, reason, result.error.detail, msg.received_at,
                                             result.device_id))
            elif result.empty:
                stats.empty += 1
            elif result.duplicate and not result.lines:
                stats.duplicates += 1
            else:
                stats.accepted += 1
            if result.lines:
                self._lines += result.lines
                self._origins += [msg] * len(result.lines)
            self._acks.append(delivery)
            waiting = len(self._acks)
        if result.error is not None:
            first = result.error.reason not in self._reject_logged
            self._reject_logged.add(result.error.reason)
            log.log(logging.WARNING if first else logging.DEBUG, "rejected %s on %s: %s%s", result.error.reason,
                    msg.topic, result.error.detail, " (further ones at DEBUG)" if first else "")
        if waiting >= FLUSH_AT and not self._kick.is_set():
            self._kick.set()

    def flush(self) -> None:
        """Make pending points and dead letters durable, then acknowledge their messages.

        Raises:
            Exception: whatever the spool or the dead-letter store raised; what was not made
                durable stays pending (with its acks) for the next call.
        """
        with self._flush_lock:
            with self._lock:
                lines, origins, dead, acks = self._lines, self._origins, self._dead, self._acks
                self._lines, self._origins, self._dead, self._acks = [], [], [], []
            if not (lines or dead or acks):
                return
            wrote = bool(lines)
            try:
                self.spool.append(lines, origins)
                lines, origins = [], []
                self.dead_letters.add_many(dead)
                dead = []
            except BaseException:
                with self._lock:  # put back in front, in order, for the next attempt
                    self._lines[:0] = lines
                    self._origins[:0] = origins
                    self._dead[:0] = dead
                    self._acks[:0] = acks
                raise
            self.source.ack_many(acks)
        if wrote:
            self.writer.wake()

    def _flush_loop(self) -> None:
        interval = self.settings.ingest.stats_interval_s
        next_stats = time.monotonic() + interval
        failing_since: float | None = None
        retry = FLUSH_PERIOD_S
        while not self._stop.is_set():
            self._kick.wait(FLUSH_PERIOD_S)
            self._kick.clear()
            try:
                self.flush()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + interval
                    self.spool.append(self.metrics.lines(to_ms(utcnow())))
            except Exception:  # keep going: the pending messages stay unacked until it works
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.exception("flush to the spool failed; messages stay unacknowledged, retrying")
                self._stop.wait(retry)
                retry = min(retry * 2, _MAX_RETRY_S)
                continue
            if failing_since is not None:
                log.info("flush works again after %.1f s", time.monotonic() - failing_since)
                failing_since, retry = None, FLUSH_PERIOD_S

    def stats_lines(self) -> list[str]:
        """Self-metrics as line protocol (``ingest_stats`` and ``ingest_rejects``), now."""
        return self.metrics.lines(to_ms(utcnow()))

    def start(self) -> None:
        """Start the Prometheus endpoint (when ``ingest.metrics_port`` > 0), create the database
        if InfluxDB is up, then start the writer, the flusher and the MQTT source.

        Raises:
            OSError: the metrics port is taken (nothing else was started).
        """
        cfg = self.settings.ingest
        if cfg.metrics_port:
            self.metrics_port = self.metrics.serve(cfg.metrics_host, cfg.metrics_port)
        try:
            self.influx.create_database(self.settings.influx.retention)
        except Exception as exc:  # InfluxDB down: the spool takes the points, the writer creates it later
            log.warning("cannot create the InfluxDB database now (%s); the spool keeps the points", exc)
        self.writer.start()
        self._flusher.start()
        self.source.start()

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop cleanly: stop taking messages, make the taken ones durable and ack them, then
        disconnect (the session stays on the broker), drain the spool into InfluxDB for up to
        ``drain_s`` seconds and close it. Points left in the spool are written on the next start.
        A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.source.pause()
        self._stop.set()
        self._kick.set()
        if self._flusher.is_alive():
            self._flusher.join(timeout=30)
        try:
            self.flush()
        except Exception:
            log.exception("last flush failed; the broker will redeliver the unacknowledged messages")
        self.source.stop()
        try:
            self.spool.append(self.stats_lines())
        except Exception:
            log.exception("could not spool the last self-metrics")
        self.writer.stop(drain_s)
        self.metrics.close()
        self.spool.close()
