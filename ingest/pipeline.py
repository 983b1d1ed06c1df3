"""The ingest pipeline, without I/O: message -> format -> codec -> validate -> line protocol.

:class:`Pipeline.process` is what the MQTT callback calls; tests feed it messages directly.
It never raises for bad input: a rejected message comes back with its :class:`PayloadError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from ingest.codecs import get_codec
from ingest.formats import FORMATS, Parser, device_in_topic, format_for_topic
from ingest.validate import Policy, validate_values
from lorong.core import schema
from lorong.core.errors import PayloadError, ValidationError
from lorong.core.model import DeviceInfo, DeviceKind, Message, RawReading, Reading, to_ms, utc_from_ms
from lorong.storage.influx import float_field, float_point, series_key

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
        device_id: the device the message is from (from the payload when it parsed, else from the
            topic, :func:`ingest.formats.device_in_topic`); None when neither names one.
        empty: True for a zero-byte payload: no readings and nothing wrong (the message that clears
            a topic's retained message, MQTT 5.0 section 3.3.1.3, reaches subscribers like this).
    """

    readings: list[Reading] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    error: PayloadError | None = None
    duplicate: bool = False
    fmt: str = ""
    device_id: str | None = None
    empty: bool = False


class DedupCache:
    """Remembers recent (device id, frame counter) pairs so that a LoRaWAN uplink heard by several
    gateways, relayed by two network servers or resent by a bridge is stored once.

    A pair counts as seen for ``window`` after its first arrival (by receive time). The window
    keeps a device that rejoined (frame counter back to 0) from being taken for a duplicate
    later; for uplinks with raw LoRaWAN bytes the key also holds a hash of the bytes, so a
    rejoined device's new frame with a counter seen minutes ago is not dropped either (gateway
    copies carry identical bytes).

    Memory is bounded by two generations of plain dicts (~130 B per pair): the current one
    takes new pairs until it is ``window`` old or holds ``size // 2`` pairs, then becomes the
    previous one and the old previous one is dropped. So every pair is remembered for its
    window unless more than ``size // 2`` newer pairs arrived meanwhile.

    The cache lives in memory: after a restart a copy may be stored again, which InfluxDB makes
    a rewrite of the same point whenever the copies carry the same time.
    """

    def __init__(self, size: int = 100_000, window: timedelta = timedelta(minutes=15)) -> None:
        self._generation_size = max(1, size // 2)
        self._window_s = window.total_seconds()
        self._current: dict[tuple[str, int] | tuple[str, int, int], float] = {}
        self._previous: dict[tuple[str, int] | tuple[str, int, int], float] = {}
        self._current_since: float | None = None

    def seen(self, device_id: str, fcnt: int, at: datetime, content: bytes | None = None,
             at_s: float | None = None) -> bool:
        """True when the pair (and ``content``, if given) was first seen less than ``window``
        before ``at``; records it otherwise.

        Args:
            device_id: registry id.
            fcnt: uplink frame counter (LoRaWAN FCnt, lorong-json ``seq``).
            at: receive time (tz-aware).
            content: raw frame bytes when the uplink has them.
            at_s: ``at.timestamp()``, when the caller has it already.
        """
        key = (device_id, fcnt) if content is None else (device_id, fcnt, hash(content))
        now = at.timestamp() if at_s is None else at_s
        first = self._current.get(key)
        if first is None:
            first = self._previous.get(key)
        if first is not None and abs(now - first) < self._window_s:
            return True
        if self._current_since is None:
            self._current_since = now
        elif now - self._current_since >= self._window_s or len(self._current) >= self._generation_size:
            self._previous, self._current, self._current_since = self._current, {}, now
        self._current[key] = now
        return False


@lru_cache(maxsize=65536)
def _series_key(kind: DeviceKind, device_id: str, kecamatan: str, extra: tuple[tuple[str, str], ...],
                city: str = "") -> str:
    """:func:`lorong.storage.influx.series_key` of a device's points, cached: tags ``device_id``,
    ``kecamatan``, ``city`` and ``extra`` (which cannot override the first three).

    Raises:
        ValidationError: ``bad_tag``, a tag value line protocol cannot carry
            (:func:`lorong.storage.influx.check_tag_value`); the message is dead-lettered whole.
    """
    reserved = (schema.TAG_DEVICE, schema.TAG_KECAMATAN, schema.TAG_CITY)
    tags = ((schema.TAG_DEVICE, device_id), (schema.TAG_KECAMATAN, kecamatan), (schema.TAG_CITY, city),
            *((k, v) for k, v in dict(extra).items() if k not in reserved))
    try:
        return series_key(schema.MEASUREMENT_BY_KIND[kind], tags)
    except ValueError as exc:
        raise ValidationError("bad_tag", str(exc)) from None


def to_lines(readings: list[Reading], device: DeviceInfo, extra_tags: Mapping[str, str] | None = None) -> list[str]:
    """Group readings by time into line-protocol points of the device kind's measurement.

    Tags: ``device_id``, ``kecamatan`` and ``city`` from the registry, plus ``extra_tags`` (ChirpStack
    ``deviceInfo.tags``: static per device, so low cardinality; they cannot override the first three).
    Fields: one float per metric and ``rx_ms`` (receive time, epoch ms, float).
    The output is what :func:`lorong.storage.influx.line` gives for the same point (ms timestamps),
    built with cached series keys because this runs for every message.

    Raises:
        ValueError: a non-finite value (validation lets none through).
    """
    if not readings:
        return []
    rx_by_ts = {r.ts: r.received_at for r in readings}  # the last reading of a time wins
    return _lines([(r.metric, r.value, r.unit, r.ts) for r in readings], device,
                  tuple(extra_tags.items()) if extra_tags else (), readings[0].received_at, rx_by_ts)


def _lines(values: list[tuple[str, float, str, datetime]], device: DeviceInfo, extra: tuple[tuple[str, str], ...],
           received_at: datetime, rx_by_ts: Mapping[datetime, datetime] | None = None,
           rx_field: str | None = None) -> list[str]:
    """:func:`to_lines` on :func:`ingest.validate.validate_values` output.

    Args:
        values: ``(metric, value, unit, ts)`` per reading.
        device: the sender.
        extra: extra tags as ``(key, value)`` pairs.
        received_at: receive time of the message (``rx_ms``), unless ``rx_by_ts`` has one per time.
        rx_by_ts: receive time per measurement time.
        rx_field: the ``rx_ms`` field of ``received_at`` as :func:`lorong.storage.influx.float_field` writes
            it, when the caller has it already.
    """
    series = _series_key(device.kind, device.device_id, device.kecamatan, extra, device.city)
    first = values[0][3]
    groups: dict[datetime, dict[str, float]]
    for v in values:
        if v[3] is not first:  # several times: group by time (hashing each time object once)
            groups = {}
            last: datetime | None = None
            fields: dict[str, float] = {}
            for metric, value, _unit, ts in values:
                if ts is not last:
                    last = ts
                    fields = groups.setdefault(ts, {})
                fields[metric] = float(value)
            break
    else:  # the usual message: one time object, no hashing of it
        groups = {first: {v[0]: float(v[1]) for v in values}}
    rx_more = rx_field or float_field(schema.FIELD_RX, float(to_ms(received_at)))
    out = []
    for ts, fields in groups.items():
        rx = rx_more if rx_by_ts is None else float_field(schema.FIELD_RX, float(to_ms(rx_by_ts[ts])))
        out.append(float_point(series, fields, to_ms(ts), rx))
    return out


class Pipeline:
    """Turns messages into line-protocol points or rejections.

    Args:
        devices: registry lookup.
        policy: validation limits.
        formats: parser by format name (default :data:`ingest.formats.FORMATS`).
        format_of: picks the format of a topic (default by topic filters).
        max_payload_bytes: larger payloads are rejected as ``too_large``.
        keep_readings: fill :attr:`Result.readings` (replay, tests); the ingester needs only
            the lines and turns it off.
        rx_slot: ``(slot, slots)``: readings without a device time get milliseconds ``m`` with
            ``m % slots == slot`` (``IngestSettings.rx_slot``; one ingester ``(0, 1)``, every one).
    """

    def __init__(
        self,
        devices: DeviceLookup,
        policy: Policy = Policy(),
        formats: Mapping[str, Parser] = FORMATS,
        format_of: Callable[[str], str] = format_for_topic,
        max_payload_bytes: int = 65536,
        keep_readings: bool = True,
        rx_slot: tuple[int, int] = (0, 1),
    ) -> None:
        self._slot, self._slots = rx_slot[0] % rx_slot[1], rx_slot[1]
        self.devices = devices
        self.policy = policy
        self.formats = formats
        self.format_of = format_of
        self.max_payload_bytes = max_payload_bytes
        self.keep_readings = keep_readings
        self.dedup = DedupCache()
        self._fmt_cache: dict[str, str] = {}
        self._rx_ms: dict[str, int] = {}
        self._rx: tuple[datetime | None, str, float] = (None, "", 0.0)  # last receive time, its rx_ms, epoch s

    def _distinct_receive_time(self, device_id: str, received_at: datetime) -> datetime:
        """The time for readings that carry no time of their own: the receive time, moved on by
        whole milliseconds when this device already has a point at that millisecond or later.

        Points are written with millisecond timestamps, and InfluxDB keeps one point per series
        and timestamp (a second write overwrites the first: InfluxDB 1.x docs, "Handle duplicate
        data points", which suggests moving the timestamp on). Uplinks without a device time
        that arrive in one burst (a broker backlog after a restart) would otherwise collapse
        into one point. The ``rx_ms`` field keeps the true receive time. Several ingesters of
        one ``$share`` group (``--workers N``) each take only the milliseconds of their own slot
        (``rx_slot``), so two of them never stamp one device's readings alike either.
        """
        ms = to_ms(received_at)
        last = self._rx_ms.get(device_id)
        at = received_at
        if last is not None and ms <= last:
            ms = last + 1
        ms += (self._slot - ms) % self._slots  # the next millisecond of this ingester's slot
        if ms != to_ms(received_at):
            # the exact millisecond: receive time + n ms would round to either side of a .5 ms
            at = utc_from_ms(ms)
        if len(self._rx_ms) >= 200_000:  # far more devices than a city has: start again
            self._rx_ms.clear()
        self._rx_ms[device_id] = ms
        return at

    def process(self, msg: Message) -> Result:
        """Process one message; never raises for bad input. A zero-byte payload gives an empty
        result with :attr:`Result.empty` set (not a rejection)."""
        topic, payload, rx = msg
        result = Result([], [])
        if not payload:
            result.empty = True
            return result
        try:
            last_rx, rx_field, rx_s = self._rx
            if rx is not last_rx:  # messages of one socket read share their receive time object
                rx_field, rx_s = float_field(schema.FIELD_RX, float(to_ms(rx))), rx.timestamp()
                self._rx = (rx, rx_field, rx_s)
            if len(payload) > self.max_payload_bytes:
                raise ValidationError("too_large", f"{len(payload)} bytes > {self.max_payload_bytes}")
            fmt = self._fmt_cache.get(topic)
            if fmt is None:
                fmt = self.format_of(topic)
                if len(self._fmt_cache) < 100_000:  # one entry per device topic
                    self._fmt_cache[topic] = fmt
            result.fmt = fmt
            uplinks = self.formats[fmt](payload, topic, rx)
            pending: list[tuple[DeviceInfo, list[Reading], int | None, bytes | None, list[str]]] = []
            for up in uplinks:
                result.device_id = up.device_id
                device = self.devices.get(up.device_id)
                if device is None:
                    raise ValidationError("unknown_device", f"{up.device_id!r} is not registered (or retired)")
                raws: Sequence[RawReading] = up.readings
                frame = up.frame
                if frame is not None:
                    if not device.codec:
                        raise ValidationError("no_codec", f"{device.device_id} has raw bytes but no codec")
                    raws = get_codec(device.codec)(frame.fport, frame.payload) + list(raws)
                values = validate_values(raws, device, rx, up.ts, self.policy)
                for value in values:
                    if value[3] == rx:  # timed by their arrival (no device or network-server time; SenML "now")
                        at = self._distinct_receive_time(device.device_id, rx)  # keep them distinct
                        if at is not rx:
                            values = [(m, v, u, at if ts == rx else ts) for m, v, u, ts in values]
                        break
                readings = [Reading(device.device_id, m, v, u, ts, rx)
                            for m, v, u, ts in values] if self.keep_readings else []
                pending.append((device, readings, up.fcnt, frame.payload if frame is not None else None,
                                _lines(values, device, up.tags, rx, rx_field=rx_field)))
        except PayloadError as exc:
            result.error = exc
            result.device_id = result.device_id or device_in_topic(topic)
            return result
        except Exception as exc:  # a bug in a parser or codec must not stop the ingester
            log.exception("internal error on topic %s", topic)
            result.error = PayloadError("internal_error", f"{type(exc).__name__}: {exc}")
            result.device_id = result.device_id or device_in_topic(topic)
            return result
        for device, readings, fcnt, content, lines in pending:
            if fcnt is not None and self.dedup.seen(device.device_id, fcnt, rx, content, rx_s):
                result.duplicate = True
                continue
            result.readings += readings
            result.lines += lines
        return result
