"""Shared engine for Milesight's channel/type/value (TLV) uplinks on FPort 85.

Every Milesight EM/AM uplink is a run of ``channel_id (1 B) | channel_type (1 B) | data``
records; ``data`` has a fixed length for each (id, type) pair and multi-byte numbers are
little-endian. The layout of each model (which pairs exist, scale, signedness) is in the vendor's
own decoders, Milesight-IoT/SensorDecoders ``em-series/<model>/<model>-decoder.js`` and
``am-series/<model>/<model>-decoder.js``; each model module cites the file it follows.

Behaviour shared by all models, matching those decoders:

* ``0xFF``/``0xFE`` records (versions, serial number, reset, downlink acknowledgements) carry no
  telemetry; they are skipped by the length the model's decoder gives them. One the model does
  not know is ``bad_frame`` (the vendor decoders throw ``unknown downlink response``).
* A measurement channel the model does not know ends decoding, as the vendor decoders do
  (``else { break; }``): the records before it are returned.
* History records (``0x20 0xCE``, on AM30x/AM319 also ``0x21 0xCE``) start with a uint32 LE Unix
  time (UTC) that becomes the ``ts`` of each reading in the record. A sentinel inside a history
  record drops only that value, so one bad sample does not discard the rest of the batch.
* Several alarm records in one frame (temperature and distance) give one ``alarm`` reading, 1.0
  when any of them is raised.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

FPORT = 85
"""Milesight sends telemetry, history and downlink acknowledgements on FPort 85."""

Size = int | Callable[[bytes, int], int]
"""Byte length of an attribute record's data, or a function of (payload, data offset) for the
few variable-length acknowledgements."""

BASE_ATTRIBUTES: dict[int, Size] = {
    0x01: 1,  # ipso_version
    0x09: 2,  # hardware_version
    0x0A: 2,  # firmware_version
    0xFF: 2,  # tsl_version
    0x16: 8,  # serial number
    0x0F: 1,  # lorawan_class
    0xFE: 1,  # reset_event
    0x0B: 1,  # device_status
    0x10: 1,  # reboot acknowledgement
    0x03: 2,  # report_interval acknowledgement
}
"""Attribute records (id 0xFF/0xFE) every model's decoder knows, type -> data length. Source:
the ``IPSO VERSION`` .. ``DEVICE STATUS`` branches and ``handle_downlink_response`` of
em-series/em310-udl/em310-udl-decoder.js, repeated in every model's decoder."""


def co2_calibration_size(payload: bytes, offset: int) -> int:
    """``0xFF 0x1A`` acknowledgement: 3 bytes in manual mode (2), else 1 (AM/EM500-CO2 decoders)."""
    return 3 if offset < len(payload) and payload[offset] == 2 else 1


def report_schedule_size(payload: bytes, offset: int) -> int:
    """``0xFF 0x3A`` on AM103/AM107: a count byte then 6 bytes per schedule entry."""
    return 1 + 6 * payload[offset] if offset < len(payload) else 1


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
    """A field whose bytes are consumed without producing a reading (no canonical metric)."""
    return Field("", "", fmt)


@dataclass(frozen=True, slots=True)
class Layout:
    """The channels of one Milesight model.

    Attributes:
        name: model name for error messages (``EM310-UDL``).
        channels: (channel_id, channel_type) -> the fields of its data, in byte order.
        history: (channel_id, channel_type) of a history record -> the fields after its uint32
            timestamp.
        attributes: extra 0xFF/0xFE record types of this model -> data length.
    """

    name: str
    channels: Mapping[tuple[int, int], tuple[Field, ...]]
    history: Mapping[tuple[int, int], tuple[Field, ...]] = field(default_factory=dict)
    attributes: Mapping[int, Size] = field(default_factory=dict)


def _need(payload: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(payload):
        raise CodecError(
            "short_frame", f"{what} needs {size} bytes at offset {offset}, frame has {len(payload)}"
        )


def _value(spec: Field, raw: int) -> float:
    if spec.values is not None:
        if raw not in spec.values:
            raise CodecError("bad_frame", f"{spec.metric} code {raw:#x} is not one of {sorted(spec.values)}")
        return spec.values[raw]
    return raw / spec.divisor


def _attribute_size(layout: Layout, key: tuple[int, int], payload: bytes, offset: int) -> int:
    size = layout.attributes.get(key[1], BASE_ATTRIBUTES.get(key[1]))
    if size is None:
        raise CodecError("bad_frame", f"{layout.name}: unknown attribute record {key[0]:02X} {key[1]:02X}")
    return size if isinstance(size, int) else size(payload, offset)


def _merge_alarms(readings: list[RawReading]) -> list[RawReading]:
    live = [r for r in readings if r.metric == "alarm" and r.ts is None]
    if len(live) < 2:
        return readings
    merged = RawReading("alarm", max(r.value for r in live), "1")
    first = readings.index(live[0])
    rest = [r for r in readings if not (r.metric == "alarm" and r.ts is None)]
    rest.insert(min(first, len(rest)), merged)
    return rest


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
            ``bad_frame`` (unknown attribute record, impossible flag code), ``sensor_sentinel``
            (a live value is the device's no-reading code).
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
        if key[0] in (0xFF, 0xFE) and key not in layout.channels:
            size = _attribute_size(layout, key, payload, i)
            _need(payload, i, size, f"attribute {key[0]:02X} {key[1]:02X}")
            i += size
            continue
        ts: datetime | None = None
        if key in layout.history:
            fields = layout.history[key]
            _need(payload, i, 4 + sum(f.size for f in fields), f"history record {key[0]:02X} {key[1]:02X}")
            (epoch,) = struct.unpack_from("<I", payload, i)
            ts = datetime.fromtimestamp(epoch, tz=UTC)
            i += 4
        elif key in layout.channels:
            fields = layout.channels[key]
            _need(payload, i, sum(f.size for f in fields), f"channel {key[0]:02X} {key[1]:02X}")
        else:
            break  # vendor decoders stop at a channel they do not know
        for spec in fields:
            (raw,) = struct.unpack_from("<" + spec.fmt, payload, i)
            i += spec.size
            if not spec.metric:
                continue
            if raw in spec.sentinels:
                if ts is not None:
                    continue  # one bad history sample: drop the value, keep the batch
                raise CodecError("sensor_sentinel", f"{spec.metric} raw value {raw:#x} means no reading")
            out.append(RawReading(spec.metric, float(_value(spec, raw)), spec.unit, ts))
    return _merge_alarms(out)


# Building blocks used by several models (names, units and scales from the vendor decoders).
BATTERY = Field("batteryLevel", "1", "B", 100.0)
"""``0x01 0x75``: battery uint8 %, emitted as a 0..1 fraction."""
TEMPERATURE = Field("temperature", "degC", "h", 10.0)
"""``0x03 0x67``: int16 LE, 0.1 degC (signed: 0xFF9C is -10.0 degC)."""
HUMIDITY = Field("relativeHumidity", "1", "B", 200.0)
"""``0x04 0x68``: uint8, 0.5 %RH steps, emitted as a 0..1 fraction."""
HUMIDITY16 = Field("relativeHumidity", "1", "H", 200.0)
"""Humidity in AM30x/AM319 history records: uint16 LE, 0.5 %RH steps, as a 0..1 fraction."""
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
ALARM = Field("alarm", "1", "B", values={0: 0.0, 1: 1.0})
"""Alarm byte of EM400 ``0x83``/``0x84`` records: 0 threshold alarm released, 1 threshold alarm."""
ALARM3 = Field("alarm", "1", "B", values={0: 0.0, 1: 1.0, 2: 1.0})
"""Alarm byte of EM500 records: 0 normal/released, 1 threshold alarm, 2 mutation alarm."""
PIR = skip("B")
"""``0x05 0x00`` PIR idle/trigger (AM30x/AM319): no canonical metric."""
LIGHT_LEVEL = skip("B")
"""``0x06 0xCB`` light level 0-5 (AM30x/AM319): a class, not lux; no canonical metric."""
TVOC_IAQ = Field("tvoc", "ppb", "H")
"""``0x08 0x7D`` on AM30x/AM319: raw uint16 = IAQ index x 100 (the current vendor decoder divides
by 100; the old TTN decoder emits the raw number). Emitted raw under ``tvoc`` as lorong.core.metrics
notes ("Milesight IAQ level x100"): it is an index, not a ppb concentration."""
TVOC_UGM3 = skip("H")
"""``0x08 0xE6`` TVOC in ug/m3 (AM30x/AM319 with tvoc_unit = ug/m3): no canonical metric in that
unit (ppb needs a molar mass the device does not state), consumed and not emitted."""
PM25 = Field("pm25", "ug/m3", "H")
"""``0x0B 0x7D``: PM2.5 uint16 LE ug/m3."""
PM10 = Field("pm10", "ug/m3", "H")
"""``0x0C 0x7D``: PM10 uint16 LE ug/m3."""
BUZZER = skip("B")
"""``0x0E 0x01`` buzzer on/off (AM30x/AM319)."""

AM_SCREEN_ATTRIBUTES: dict[int, Size] = {
    0x06: 9, 0x11: 4, 0x17: 2, 0x18: 2, 0x1A: co2_calibration_size, 0x27: 1, 0x2D: 1, 0x2F: 1,
    0x39: 5, 0x3A: report_schedule_size, 0x3B: 1, 0x54: 5, 0x56: 1, 0x57: 1, 0x59: 1, 0x5A: 2,
    0x68: 1, 0x69: 1, 0x6A: 3, 0x75: 7, 0x85: 1, 0x86: 1, 0x87: 3, 0xF0: 4,
}
"""0xFF/0xFE records of AM103/AM107 (``handle_downlink_response`` and ``SENSOR ENABLE`` of
am-series/am103/am103-decoder.js and am-series/am107/am107-decoder.js)."""

AM300_ATTRIBUTES: dict[int, Size] = {
    0x17: 2, 0x1A: co2_calibration_size, 0x25: 1, 0x27: 1, 0x2C: 1, 0x2D: 1, 0x2E: 1, 0xEB: 1,
    0x39: 5, 0x3A: 2, 0x3B: 1, 0x3C: 1, 0x3D: 1, 0x3E: 1, 0x65: 2, 0x66: 1, 0x68: 1, 0x69: 1,
    0x6A: 3, 0x6D: 1, 0xF0: 4, 0xF4: 1,
}
"""0xFF/0xFE records of AM307/AM308 (``handle_downlink_response`` of am-series/am307/am307-decoder.js
and am-series/am308/am308-decoder.js; AM319 differs only in 0x39, 1 byte)."""

AM300_CHANNELS: dict[tuple[int, int], tuple[Field, ...]] = {
    (0x01, 0x75): (BATTERY,),
    (0x03, 0x67): (TEMPERATURE,),
    (0x04, 0x68): (HUMIDITY,),
    (0x05, 0x00): (PIR,),
    (0x06, 0xCB): (LIGHT_LEVEL,),
    (0x07, 0x7D): (CO2,),
    (0x08, 0x7D): (TVOC_IAQ,),
    (0x08, 0xE6): (TVOC_UGM3,),
    (0x09, 0x73): (PRESSURE,),
    (0x0E, 0x01): (BUZZER,),
}
"""Channels common to AM307, AM308 and AM319 (their decoders in am-series/)."""

AM300_HISTORY: tuple[Field, ...] = (
    TEMPERATURE, HUMIDITY16, PIR, LIGHT_LEVEL, CO2, TVOC_IAQ, PRESSURE,
)
"""Fields of an AM307 ``20 CE`` history record after its timestamp (AM308/AM319 append more)."""

AM300_HISTORY_UGM3: tuple[Field, ...] = (
    TEMPERATURE, HUMIDITY16, PIR, LIGHT_LEVEL, CO2, TVOC_UGM3, PRESSURE,
)
"""Fields of an AM307 ``21 CE`` history record (TVOC in ug/m3, not emitted)."""
