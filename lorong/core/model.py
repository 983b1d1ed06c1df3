"""Domain types that cross room boundaries.

Every timestamp is a tz-aware UTC ``datetime``; every value is a float in the canonical unit
of its metric (see :mod:`lorong.core.metrics`).

The types built for every MQTT message (:class:`Message`, :class:`RawReading`, :class:`Uplink`)
are ``NamedTuple``: immutable like the frozen dataclasses here, and built in about a quarter of
their time (0.4 us against 1.6 us for four fields), which counts at thousands of messages a second.
Use ``._asdict()`` where ``dataclasses.asdict`` would be used for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple


class DeviceKind(StrEnum):
    """What a device measures: a waste bin (fill level) or an air-quality station."""

    BIN = "bin"
    AIR = "air"


class Message(NamedTuple):
    """One MQTT message as received.

    Attributes:
        topic: the MQTT topic name (UTF-8).
        payload: raw payload bytes, untouched.
        received_at: tz-aware UTC time the ingester received it.
    """

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Frame:
    """An undecoded LoRaWAN uplink that needs the device's byte codec.

    Attributes:
        fport: LoRaWAN FPort, 1..223 for application data.
        payload: the FRMPayload bytes (already base64-decoded).
    """

    fport: int
    payload: bytes


class RawReading(NamedTuple):
    """One value as a payload format or codec produced it, before validation.

    Attributes:
        metric: canonical metric name (a key of ``lorong.core.metrics.METRICS``) or a vendor name
            that validation rejects as ``unknown_metric``.
        value: number in ``unit``.
        unit: unit symbol as in ``lorong.core.metrics`` (``"mm"``, ``"degC"``, ``"1"`` for fractions).
        ts: device time (tz-aware UTC) when the payload carried one, else ``None``.
    """

    metric: str
    value: float
    unit: str
    ts: datetime | None = None


class Uplink(NamedTuple):
    """What a payload format extracted from one message.

    Attributes:
        device_id: the device the message is from (DevEUI in upper-case hex for LoRaWAN,
            else the serial number / id the gateway uses).
        readings: values already decoded (JSON formats, ``decoded_payload``).
        frame: undecoded bytes for the device's codec, when no decoded values came along.
        fcnt: LoRaWAN uplink frame counter, used to store gateway duplicates once.
        ts: message-level time (network server ``received_at`` or payload time), UTC.
        tags: extra string tags from the gateway (ChirpStack ``deviceInfo.tags``).
    """

    device_id: str
    readings: tuple[RawReading, ...] = ()
    frame: Frame | None = None
    fcnt: int | None = None
    ts: datetime | None = None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reading:
    """A validated reading in canonical units, ready for the time-series store.

    Attributes:
        device_id: registry id of the device.
        metric: canonical metric name (``lorong.core.metrics.METRICS``).
        value: float in ``unit``.
        unit: canonical unit of ``metric``.
        ts: measurement time, tz-aware UTC (device time when sane, else receive time).
        received_at: when the ingester received the message, tz-aware UTC.
    """

    device_id: str
    metric: str
    value: float
    unit: str
    ts: datetime
    received_at: datetime


DEFAULT_REPORT_INTERVAL_S = 600
"""Seconds between uplinks assumed for a device registered without its interval: ten minutes, the
interval of the simulated fleets and of the registry's default (our choice)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The registry facts ingest and analytics need about one device.

    Attributes:
        device_id: DevEUI (16 upper-case hex digits) or serial number.
        kind: bin or air.
        codec: LoRaWAN byte codec id (``milesight-em310-udl``) or ``None`` for JSON-only devices.
        kecamatan: district name, used as an InfluxDB tag.
        city: the device's city id (registry ``city_id``; the deployment's city for a device that names
            none, :func:`devices.registry.to_info`), the ``city`` tag of its points.
        bin_depth_mm: distance from the ultrasonic sensor to the empty bin floor, mm.
        blind_zone_mm: distance below which the sensor cannot measure (bin full), mm.
        full_threshold: per-device override of the full-bin threshold (fraction), or ``None``.
        report_interval_s: expected seconds between uplinks.
    """

    device_id: str
    kind: DeviceKind
    codec: str | None = None
    kecamatan: str = ""
    bin_depth_mm: float | None = None
    blind_zone_mm: float = 0.0
    full_threshold: float | None = None
    report_interval_s: int = DEFAULT_REPORT_INTERVAL_S
    lat: float | None = None
    lon: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    city: str = ""


def utcnow() -> datetime:
    """Current time, tz-aware UTC."""
    return datetime.now(UTC)


def utc_from_ms(ms: float) -> datetime:
    """UTC datetime from Unix epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def to_ms(ts: datetime) -> int:
    """Unix epoch milliseconds of a tz-aware datetime.

    Raises:
        ValueError: ``ts`` is naive.
    """
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: Lorong only handles tz-aware times")
    return round(ts.timestamp() * 1000)
