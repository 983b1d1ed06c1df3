"""The ingest pipeline, without I/O: message -> format -> codec -> validate -> line protocol.

:class:`Pipeline.process` is what the MQTT callback calls; tests feed it messages directly.
It never raises for bad input: a rejected message comes back with its :class:`PayloadError`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from core import schema
from core.errors import PayloadError, ValidationError
from core.model import DeviceInfo, Message, Reading, to_ms
from ingest.codecs import get_codec
from ingest.formats import FORMATS, Parser, format_for_topic
from ingest.validate import Policy, validate
from storage.influx import line

log = logging.getLogger(__name__)


class DeviceLookup(Protocol):
    """Where the pipeline finds registered devices (the registry, or a dict in tests)."""

    def get(self, device_id: str) -> DeviceInfo | None:
        """The device, or ``None`` when unknown or retired."""
        ...


@dataclass
class Result:
    """Outcome of one message.

    Attributes:
        readings: validated readings (empty when rejected or duplicate).
        lines: line-protocol points to store, one per (device, time).
        error: the rejection, when the message goes to the dead-letter store.
        duplicate: True when the same (device, frame counter) was already stored.
        fmt: the payload format name used, when one matched.
    """

    readings: list[Reading] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    error: PayloadError | None = None
    duplicate: bool = False
    fmt: str = ""


class DedupCache:
    """Remembers the last ``size`` (device id, frame counter) pairs for ``window``: LoRaWAN
    copies heard by several gateways, or resent by a bridge, are stored once. The window keeps a
    device that rejoined (frame counter back to 0) from being taken for a duplicate later."""

    def __init__(self, size: int = 100_000, window: timedelta = timedelta(minutes=15)) -> None:
        self._seen: OrderedDict[tuple[str, int], datetime] = OrderedDict()
        self._size = size
        self._window = window

    def seen(self, device_id: str, fcnt: int, at: datetime) -> bool:
        """True when the pair was seen less than ``window`` before ``at``; records it otherwise."""
        key = (device_id, fcnt)
        first = self._seen.get(key)
        if first is not None and abs(at - first) < self._window:
            return True
        self._seen[key] = at
        self._seen.move_to_end(key)
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return False


def to_lines(readings: list[Reading], device: DeviceInfo, extra_tags: Mapping[str, str] | None = None) -> list[str]:
    """Group readings by time into line-protocol points of the device kind's measurement.

    Tags: ``device_id``, ``kecamatan`` (+ ``extra_tags``). Fields: one float per metric and
    ``rx_ms`` (receive time, epoch ms, float).
    """
    measurement = schema.MEASUREMENT_BY_KIND[device.kind]
    tags = {schema.TAG_DEVICE: device.device_id, schema.TAG_KECAMATAN: device.kecamatan, **(extra_tags or {})}
    by_ts: dict[datetime, dict[str, float]] = {}
    rx: dict[datetime, datetime] = {}
    for r in readings:
        by_ts.setdefault(r.ts, {})[r.metric] = float(r.value)
        rx[r.ts] = r.received_at
    return [
        line(measurement, tags, {**fields, schema.FIELD_RX: float(to_ms(rx[ts]))}, to_ms(ts))
        for ts, fields in by_ts.items()
    ]


class Pipeline:
    """Turns messages into line-protocol points or rejections.

    Args:
        devices: registry lookup.
        policy: validation limits.
        formats: parser by format name (default :data:`ingest.formats.FORMATS`).
        format_of: picks the format of a topic (default by topic filters).
        max_payload_bytes: larger payloads are rejected as ``too_large``.
    """

    def __init__(
        self,
        devices: DeviceLookup,
        policy: Policy = Policy(),
        formats: Mapping[str, Parser] = FORMATS,
        format_of: Callable[[str], str] = format_for_topic,
        max_payload_bytes: int = 65536,
    ) -> None:
        self.devices = devices
        self.policy = policy
        self.formats = formats
        self.format_of = format_of
        self.max_payload_bytes = max_payload_bytes
        self.dedup = DedupCache()

    def process(self, msg: Message) -> Result:
        """Process one message; never raises for bad input."""
        result = Result()
        try:
            if len(msg.payload) > self.max_payload_bytes:
                raise ValidationError("too_large", f"{len(msg.payload)} bytes > {self.max_payload_bytes}")
            result.fmt = self.format_of(msg.topic)
            uplinks = self.formats[result.fmt](msg.payload, msg.topic, msg.received_at)
            pending: list[tuple[DeviceInfo, list[Reading], int | None]] = []
            for up in uplinks:
                device = self.devices.get(up.device_id)
                if device is None:
                    raise ValidationError("unknown_device", f"{up.device_id!r} is not registered (or retired)")
                raws = list(up.readings)
                if up.frame is not None:
                    if not device.codec:
                        raise ValidationError("no_codec", f"{device.device_id} has raw bytes but no codec")
                    raws = get_codec(device.codec)(up.frame.fport, up.frame.payload) + raws
                readings = validate(raws, device, msg.received_at, up.ts, self.policy)
                pending.append((device, readings, up.fcnt))
        except PayloadError as exc:
            result.error = exc
            return result
        except Exception as exc:  # a bug in a parser or codec must not stop the ingester
            log.exception("internal error on topic %s", msg.topic)
            result.error = PayloadError("internal_error", f"{type(exc).__name__}: {exc}")
            return result
        for device, readings, fcnt in pending:
            if fcnt is not None and self.dedup.seen(device.device_id, fcnt, msg.received_at):
                result.duplicate = True
                continue
            result.readings.extend(readings)
            result.lines.extend(to_lines(readings, device))
        return result
