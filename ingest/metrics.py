"""The ingester's self-metrics: one set of counters, two outlets.

- InfluxDB: every ``ingest.stats_interval_s`` seconds a point in ``ingest_stats`` (tag
  ``instance``) and one per reject reason in ``ingest_rejects`` (tags ``instance``, ``reason``),
  written through the spool like readings (:meth:`IngestMetrics.lines`).
- Prometheus text format on ``http://<ingest.metrics_host>:<ingest.metrics_port>/metrics``
  (prometheus-client), read at scrape time from the same counters, so the message hot path
  only increments integers. Names follow the Prometheus naming guide
  (https://prometheus.io/docs/practices/naming/): ``_total`` counters, base units (seconds).

Counters count since the process started; graph them with ``non_negative_derivative`` in
InfluxQL or ``rate()`` in PromQL.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lorong.core import schema
from lorong.storage.influx import line

log = logging.getLogger(__name__)

WRITE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets of one InfluxDB ``/write`` (s); the top one is the default HTTP timeout."""


@dataclass
class Stats:
    """Counters since start.

    Attributes:
        received: MQTT messages handed to the pipeline.
        accepted: messages that produced points.
        duplicates: messages whose every uplink was a duplicate (same device and frame counter).
        empty: zero-byte messages (a retained message cleared); acknowledged, nothing stored.
        rejected: rejected messages by reason code (dead-lettered).
        stored_points: points InfluxDB accepted (readings and self-metrics).
        refused_points: points InfluxDB refused for good (dead-lettered as ``store_rejected``).
        last_write_ms: duration of the last successful ``/write`` (ms).
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    empty: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stored_points: int = 0
    refused_points: int = 0
    last_write_ms: float = 0.0


class _StatsCollector(Collector):
    """Reads :class:`Stats` and the live gauges at scrape time."""

    def __init__(self, owner: IngestMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        o, s = self._owner, self._owner.stats
        for name, doc, value in (
            ("lorong_ingest_messages_received", "MQTT messages received.", s.received),
            ("lorong_ingest_messages_accepted", "Messages that produced points.", s.accepted),
            ("lorong_ingest_messages_duplicate", "Messages stored once already (same frame counter).",
             s.duplicates),
            ("lorong_ingest_messages_empty", "Zero-byte messages (a retained message cleared).", s.empty),
            ("lorong_ingest_points_stored", "Points InfluxDB accepted.", s.stored_points),
            ("lorong_ingest_points_refused", "Points InfluxDB refused (dead-lettered).", s.refused_points),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        rejected = CounterMetricFamily("lorong_ingest_messages_rejected", "Rejected messages by reason.",
                                       labels=["reason"])
        for reason, n in sorted(dict(s.rejected).items()):  # dict(): an atomic copy, the network thread adds keys
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("lorong_ingest_spool_depth_points", "Points waiting in the on-disk spool.",
                                value=o.spool_depth())
        if o.spool_free is not None:
            yield GaugeMetricFamily("lorong_ingest_spool_free_bytes",
                                    "Free bytes on the spool's filesystem (at 0 the ingester takes no messages).",
                                    value=o.spool_free())
        yield GaugeMetricFamily("lorong_ingest_influx_up", "1 while InfluxDB takes writes.",
                                value=1.0 if o.influx_up() else 0.0)
        yield GaugeMetricFamily("lorong_ingest_mqtt_up", "1 while connected to the broker and subscribed.",
                                value=1.0 if o.mqtt_up() else 0.0)


class IngestMetrics:
    """Self-metrics of one ingester.

    Args:
        instance: value of the ``instance`` tag in InfluxDB.
        spool_depth: current spool depth (points).
        influx_up: False while the writer is backing off.
        mqtt_up: True while connected to the broker and subscribed.
        spool_free: free bytes on the spool's filesystem (``lorong_ingest_spool_free_bytes``), if known.
    """

    def __init__(self, instance: str, spool_depth: Callable[[], int], influx_up: Callable[[], bool],
                 mqtt_up: Callable[[], bool], spool_free: Callable[[], int] | None = None) -> None:
        self.instance = instance
        self.spool_free = spool_free
        self.stats = Stats()
        self.spool_depth = spool_depth
        self.influx_up = influx_up
        self.mqtt_up = mqtt_up
        self.registry = CollectorRegistry(auto_describe=True)
        self.write_seconds = Histogram("lorong_ingest_write_seconds", "Duration of one InfluxDB write (s).",
                                       buckets=WRITE_BUCKETS_S, registry=self.registry)
        self.registry.register(_StatsCollector(self))
        self._server: tuple[WSGIServer, Thread] | None = None

    def written(self, points: int, seconds: float) -> None:
        """Record a successful write of ``points`` points that took ``seconds``."""
        self.stats.stored_points += points
        self.stats.last_write_ms = seconds * 1000.0
        self.write_seconds.observe(seconds)

    def lines(self, now_ms: int) -> list[str]:
        """Self-metrics as line protocol at ``now_ms`` (epoch ms).

        Returns:
            one ``ingest_stats`` point (fields ``received``, ``accepted``, ``stored``,
            ``rejected``, ``duplicates``, ``refused``, ``spool_depth``, ``write_ms``; floats) and one
            ``ingest_rejects`` point per reason seen (field ``count``).
        """
        tags = {schema.TAG_INSTANCE: self.instance}
        s = self.stats
        rejected = dict(s.rejected)  # an atomic copy: the network thread adds keys
        out = [line(schema.MEASUREMENT_INGEST, tags, {
            "received": float(s.received), "accepted": float(s.accepted), "stored": float(s.stored_points),
            "rejected": float(sum(rejected.values())), "duplicates": float(s.duplicates),
            "refused": float(s.refused_points), "spool_depth": float(self.spool_depth()),
            "write_ms": float(s.last_write_ms)}, now_ms)]
        out += [line(schema.MEASUREMENT_REJECTS, {**tags, schema.TAG_REASON: r}, {"count": float(n)}, now_ms)
                for r, n in sorted(rejected.items())]
        return out

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; port 0 picks a free one.

        Returns:
            the bound port.

        Raises:
            OSError: the address is in use or not local.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = (server, thread)
        bound = int(server.server_address[1])
        log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP endpoint, if serving."""
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None
