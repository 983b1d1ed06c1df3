"""Lorong's native JSON uplink (``lorong-json``), for Wi-Fi/cellular gateways and single sensors.

Topic ``lorong/v1/<device_id>/up``. Payload (UTF-8 JSON object)::

    {
      "device_id": "MKS-BIN-0001",              # optional; must equal the topic's id when given
      "time": "2026-11-29T10:00:00+08:00",      # ISO-8601 with offset; optional (receive time used)
      "seq": 42,                                # optional uplink counter, stored once per device
      "metrics": {
        "distance": {"value": 812, "unit": "mm"},
        "batteryLevel": {"value": 93, "unit": "%"},
        "pm25": 31.5                             # bare number = the metric's canonical unit
      }
    }

Metric names are the canonical ones of :mod:`lorong.core.metrics`; units are converted on validation.
"""

from __future__ import annotations

from datetime import datetime

from ingest.formats._common import as_int, load_json_object, parse_time
from ingest.vendor_keys import as_float
from lorong.core.errors import ParseError
from lorong.core.metrics import METRICS
from lorong.core.model import RawReading, Uplink

NAME = "lorong-json"
TOPICS = ("lorong/v1/+/up",)
DEVICE_LEVEL = 2
"""Level of ``TOPICS`` holding the device id (0-based): the one place that says so."""


_DEVICE_OF_TOPIC: dict[str, str] = {}
"""Device id by topic, for the topics seen (one per device; bounded)."""


def topic_device(topic: str) -> str:
    """The device id in ``lorong/v1/<device_id>/up``.

    Raises:
        ParseError: reason ``bad_topic``.
    """
    device_id = _DEVICE_OF_TOPIC.get(topic)
    if device_id is not None:
        return device_id
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != ["lorong", "v1"] or parts[3] != "up" or not parts[DEVICE_LEVEL]:
        raise ParseError("bad_topic", f"{NAME}: expected lorong/v1/<device_id>/up, got {topic!r}")
    if len(_DEVICE_OF_TOPIC) < 100_000:
        _DEVICE_OF_TOPIC[topic] = parts[DEVICE_LEVEL]
    return parts[DEVICE_LEVEL]


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one native JSON uplink.

    Raises:
        ParseError: ``bad_topic``, ``bad_json``, ``bad_time``, ``device_mismatch``,
            ``bad_value`` (a metric value that is not a number, a ``seq`` that is not a uint32).
    """
    device_id = topic_device(topic)
    obj = load_json_object(payload, NAME)
    if "device_id" in obj and obj["device_id"] != device_id:
        raise ParseError("device_mismatch",
                         f"{NAME}: payload device_id {obj['device_id']!r:.80} on topic of {device_id!r}")
    ts = parse_time(obj["time"], NAME) if obj.get("time") is not None else None
    metrics = obj.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ParseError("bad_json", f"{NAME}: 'metrics' must be a non-empty object")
    readings: list[RawReading] = []
    for name, item in metrics.items():
        if type(item) is dict:
            value, unit = item.get("value"), item.get("unit")
        else:
            spec = METRICS.get(name)
            value, unit = item, spec.unit if spec is not None else "1"
        # JSON numbers only (a numeric string is not, nor true/false); as_float turns an int beyond
        # a double into inf, which validation rejects as non_finite
        kind = type(value)
        number = value if kind is float else as_float(value) if kind is int else None
        if number is None:
            raise ParseError("bad_value", f"{NAME}: metric {name!r:.80} value {value!r:.80} is not a number")
        if type(unit) is not str:
            raise ParseError("bad_value", f"{NAME}: metric {name!r:.80} needs a string 'unit'")
        readings.append(RawReading(name, number, unit, ts))
    seq = obj.get("seq")
    fcnt = as_int(seq)
    if seq is not None and (fcnt is None or not 0 <= fcnt < 2**32):
        raise ParseError("bad_value", f"{NAME}: 'seq' must be an integer 0..4294967295, got {seq!r:.40}")
    return [Uplink(device_id, tuple(readings), None, fcnt, ts)]
