"""The running ingester: MQTT source -> pipeline -> spool (then ack) -> writer -> InfluxDB.

Delivery: a QoS 1 message is acknowledged only after its points are in the durable spool (or
its rejection is in the dead-letter store), so a crash loses nothing: the broker redelivers
what was not acknowledged, and a redelivery rewrites the same series and timestamp.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from core import schema
from core.model import Message, to_ms, utcnow
from core.settings import Settings
from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.mqtt_source import MqttSource
from ingest.pipeline import DeviceLookup, Pipeline
from ingest.validate import Policy
from ingest.writer import SpoolWriter
from storage.influx import InfluxClient, line
from storage.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Counters since start: messages received, points stored, messages rejected (by reason),
    duplicates dropped, write latency of the last batch (ms)."""

    received: int = 0
    stored_points: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_write_ms: float = 0.0


class Ingester:
    """Wires the parts together; :meth:`start` and :meth:`stop` are all a caller needs.

    Args:
        settings: Lorong settings (broker, InfluxDB, ingest tuning).
        devices: registry lookup.
        dead_letters: dead-letter store.
        influx: InfluxDB client (the database is created at start).
    """

    def __init__(self, settings: Settings, devices: DeviceLookup, dead_letters: DeadLetterStore,
                 influx: InfluxClient) -> None:
        cfg = settings.ingest
        self.settings = settings
        self.pipeline = Pipeline(devices, Policy(cfg.max_future_s, cfg.min_year),
                                 max_payload_bytes=cfg.max_payload_bytes)
        self.dead_letters = dead_letters
        self.influx = influx
        self.spool = Spool(cfg.spool_dir / f"{settings.mqtt.client_id}.sqlite")
        self.stats = Stats()
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._dead: list[DeadLetter] = []
        self._acks: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self.source = MqttSource(settings.mqtt, self._on_message)
        self.writer = SpoolWriter(self.spool, influx, dead_letters.add_many, cfg.batch_size,
                                  on_written=self._written)
        self._flusher = threading.Thread(target=self._flush_loop, name="ingest-flush", daemon=True)

    def _written(self, points: int, seconds: float) -> None:
        self.stats.stored_points += points
        self.stats.last_write_ms = seconds * 1000.0

    def _on_message(self, msg: Message, mid: int, qos: int) -> None:
        result = self.pipeline.process(msg)
        with self._lock:
            self.stats.received += 1
            if result.error is not None:
                self.stats.rejected[result.error.reason] += 1
                log.warning("rejected %s on %s: %s", result.error.reason, msg.topic, result.error.detail)
                self._dead.append(DeadLetter(msg.topic, msg.payload, result.error.reason, result.error.detail,
                                             msg.received_at))
            elif result.duplicate and not result.lines:
                self.stats.duplicates += 1
            else:
                self.stats.accepted += 1
            self._lines.extend(result.lines)
            self._acks.append((mid, qos))
            big = len(self._acks) >= 2000
        if big:
            self.flush()

    def flush(self) -> None:
        """Make pending points and dead letters durable, then acknowledge their messages."""
        with self._lock:
            lines, dead, acks = self._lines, self._dead, self._acks
            self._lines, self._dead, self._acks = [], [], []
            if not acks and not lines and not dead:
                return
            self.spool.append(lines)
            self.dead_letters.add_many(dead)
        for mid, qos in acks:
            self.source.ack(mid, qos)
        if lines:
            self.writer.wake()

    def _flush_loop(self) -> None:
        period = min(self.settings.ingest.flush_interval_s, 0.05)
        next_stats = time.monotonic() + 10.0
        while not self._stop.wait(period):
            try:
                self.flush()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + 10.0
                    self.spool.append(self.stats_lines())
            except Exception:  # keep flushing whatever happens; the error is logged
                log.exception("flush failed; will retry")

    def stats_lines(self) -> list[str]:
        """Self-metrics as line protocol (``ingest_stats`` and ``ingest_rejects``)."""
        now = to_ms(utcnow())
        tags = {schema.TAG_INSTANCE: self.settings.ingest.instance}
        s = self.stats
        out = [line(schema.MEASUREMENT_INGEST, tags, {
            "received": float(s.received), "stored": float(s.stored_points), "accepted": float(s.accepted),
            "rejected": float(sum(s.rejected.values())), "duplicates": float(s.duplicates),
            "spool_depth": float(self.spool.depth()), "write_ms": float(s.last_write_ms)}, now)]
        out += [line(schema.MEASUREMENT_REJECTS, {**tags, schema.TAG_REASON: r}, {"count": float(n)}, now)
                for r, n in s.rejected.items()]
        return out

    def start(self) -> None:
        """Create the database, start the writer, the flusher and the MQTT source."""
        self.influx.create_database(self.settings.influx.retention)
        self.writer.start()
        self._flusher.start()
        self.source.start()

    def stop(self) -> None:
        """Stop taking messages, flush, drain the spool (briefly) and stop the writer."""
        self.source.stop()
        self._stop.set()
        self._flusher.join(timeout=5)
        self.flush()
        self.writer.stop()
        self.spool.close()
