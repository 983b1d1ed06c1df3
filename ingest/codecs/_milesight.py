"""Shared engine for Milesight's channel/type/value (TLV) uplinks on FPort 85.

Every Milesight EM/AM uplink is a run of ``channel_id (1 B) | channel_type (1 B) | data``
records; ``data`` has a fixed length for each (id, type) pair and multi-byte numbers are
little-endian. The layout of each model (which pairs exist, scale, signedness) is in the vendor's
own decoders, Milesight-IoT/SensorDecoders ``em-series/<model>/<model>-decoder.js`` and
``am-series/<model>/<model>-decoder.js``; each model module cites the file it follows.

Behaviour shared by all models, matching those decoders:

* ``0xFF``/``0xFE`` records (versions, serial number, reset, downlink acknowledgements) carry no
  telemetry; they are skipped by their documented length, an unknown one is ``bad_frame``.
* A measurement channel the model does not know ends decoding, as the vendor decoders do
  (``else { break; }``): the records before it are returned.
* ``0x20 0xCE`` history records start with a uint32 LE Unix time (UTC) that becomes the ``ts``
  of each reading in the record.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import CodecError
from core.model import RawReading

FPORT = 85
"""Milesight sends telemetry, history and downlink acknowledgements on FPort 85."""

HISTORY = (0x20, 0xCE)
"""Channel id/type of a history (data retransmission) record."""

# Lengths of the attribute records every Milesight decoder knows (0xFF id; 0xFE shares the
# acknowledgement types). Source: the ``IPSO VERSION`` .. ``DEVICE STATUS`` branches and
# ``handle_downlink_response`` of em-series/em310-udl/em310-udl-decoder.js (repeated in every model).
_ATTRIBUTE_LENGTHS: dict[int, int] = {
    0x01: 1,  # ipso_version
    0x09: 2,  # hardware_version
    0x0A: 2,  # firmware_version
    0xFF: 2,  # tsl_version
    0x16: 8,  # serial number
    0x0F: 1,  # lorawan_class
    0xFE: 1,  # reset_event
    0x0B: 1,  # device_status
    0x10: 1,  # reboot acknowledgement
    0x02: 2,  # collection_interval acknowledgement
    0x03: 2,  # report_interval acknowledgement
    0x06: 9,  # threshold alarm configuration acknowledgement
}


@dataclass(frozen=True, slots=True)
class Field:
    """One little-endian number inside a channel's data.

    Attributes:
        metric: canonical metric name, or ``""`` to consume the bytes and emit nothing.
        unit: canonical unit of the emitted value.
        fmt: :mod:`struct` code of the raw number: ``B`` uint8, ``H`` uint16, ``h`` int16,
            ``I`` uint32.
        divisor: value = raw / divisor (e.g. 10 for 0.1 degC steps, 100 for % -> fraction).
        sentinels: raw values the device sends instead of a measurement; raise
            ``sensor_sentinel``.
        values: when set, the only raw codes allowed and the value each maps to (flags);
            any other code is ``bad_frame``.
    """

    metric: str
    unit: str
    fmt: str
    divisor: float = 1.0
    sentinels: frozenset[int] = frozenset()
    values: Mapping[int, float] | None = None

    @property
    def size(self) -> int:
        """Byte length of the raw number."""
        return struct.calcsize("<" + self.fmt)


def skip(fmt: str) -> Field:
    """A field whose bytes are consumed without producing a reading."""
    return Field("", "", fmt)


@dataclass(frozen=True, slots=True)
class Layout:
    """The channels of one Milesight model.

    Attributes:
        name: model name for error messages (``EM310-UDL``).
        channels: (channel_id, channel_type) -> the fields of its data, in byte order.
        history: fields after the uint32 timestamp of a ``0x20 0xCE`` record, or ``None`` when the
            model has no history records.
    """

    name: str
    channels: Mapping[tuple[int, int], tuple[Field, ...]]
    history: tuple[Field, ...] | None = None


def _read(spec: Field, payload: bytes, offset: int, ts: datetime | None, out: list[RawReading]) -> None:
    (raw,) = struct.unpack_from("<" + spec.fmt, payload, offset)
    if not spec.metric:
        return
    if raw in spec.sentinels:
        raise CodecError("sensor_sentinel", f"{spec.metric} raw value {raw:#x} means no reading")
    if spec.values is not None:
        if raw not in spec.values:
            raise CodecError("bad_frame", f"{spec.metric} code {raw:#x} is not one of {sorted(spec.values)}")
        value = spec.values[raw]
    else:
        value = raw / spec.divisor
    out.append(RawReading(spec.metric, float(value), spec.unit, ts))


def _need(payload: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(payload):
        raise CodecError(
            "short_frame", f"{what} needs {size} bytes at offset {offset}, frame has {len(payload)}"
        )


def decode(layout: Layout, fport: int, payload: bytes) -> list[RawReading]:
    """Decode one Milesight uplink with the channel table ``layout``.

    Args:
        layout: the model's channel table.
        fport: LoRaWAN FPort; only 85 carries Milesight data.
        payload: FRMPayload bytes.

    Returns:
        Readings in frame order; history readings carry their record's UTC ``ts``, the others
        ``ts=None``.

    Raises:
        CodecError: ``unknown_fport`` (not 85), ``short_frame`` (empty or a record cut short),
            ``bad_frame`` (unknown attribute record, impossible flag code), ``sensor_sentinel``.
    """
    if fport != FPORT:
        raise CodecError("unknown_fport", f"{layout.name} uses FPort {FPORT}, got {fport}")
    if not payload:
        raise CodecError("short_frame", f"{layout.name}: empty payload")
    out: list[RawReading] = []
    i = 0
    while i < len(payload):
        _need(payload, i, 2, "channel header")
        key = (payload[i], payload[i + 1])
        i += 2
        if key[0] in (0xFF, 0xFE):
            size = _ATTRIBUTE_LENGTHS.get(key[1])
            if size is None:
                raise CodecError(
                    "bad_frame", f"{layout.name}: unknown attribute record {key[0]:02X} {key[1]:02X}"
                )
            _need(payload, i, size, f"attribute {key[0]:02X} {key[1]:02X}")
            i += size
            continue
        ts: datetime | None = None
        if key == HISTORY and layout.history is not None:
            _need(payload, i, 4, "history timestamp")
            (epoch,) = struct.unpack_from("<I", payload, i)
            ts = datetime.fromtimestamp(epoch, tz=UTC)
            i += 4
            fields = layout.history
        elif key in layout.channels:
            fields = layout.channels[key]
        else:
            break  # vendor decoders stop at a channel they do not know
        _need(payload, i, sum(f.size for f in fields), f"channel {key[0]:02X} {key[1]:02X}")
        for spec in fields:
            _read(spec, payload, i, ts, out)
            i += spec.size
    return out


# Building blocks used by several models (names, units and scales from the vendor decoders).
BATTERY = Field("batteryLevel", "1", "B", 100.0)
"""``0x01 0x75``: battery uint8 %, emitted as a 0..1 fraction."""
TEMPERATURE = Field("temperature", "degC", "h", 10.0)
"""``0x03 0x67``: int16 LE, 0.1 degC."""
HUMIDITY = Field("relativeHumidity", "1", "B", 200.0)
"""``0x04 0x68``: uint8, 0.5 %RH steps, emitted as a 0..1 fraction."""
HUMIDITY16 = Field("relativeHumidity", "1", "H", 200.0)
"""Humidity in history records: uint16 LE, 0.5 %RH steps, emitted as a 0..1 fraction."""
POSITION = Field("tilt", "1", "B", values={0: 0.0, 1: 1.0})
"""Position: 0 normal, 1 tilt."""
PRESSURE = Field("pressure", "hPa", "H", 10.0)
"""``0x?? 0x73``: uint16 LE, 0.1 hPa."""
CO2 = Field("co2", "ppm", "H")
"""``0x?? 0x7D``: uint16 LE ppm."""
DISTANCE = Field("distance", "mm", "H", sentinels=frozenset({0x0000, 0xFFFF}))
"""``0x?? 0x82``: uint16 LE mm. 0 is what the ultrasonic/ToF front end reports without an echo and
0xFFFF (65.5 m, beyond every model's 4.5-20 m range) is an all-ones no-echo code: both are
``sensor_sentinel``. Plausibility within the range is left to validation."""
