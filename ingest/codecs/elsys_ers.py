"""Elsys ERS family room sensors: ERS, ERS Lite, ERS CO2, ERS CO2 Lite, ERS VOC, ERS Sound, ERS Eye.

All Elsys devices share one payload format, decoded by Elsys' own ``elsys.js`` (as shipped in
TheThingsNetwork/lorawan-devices ``vendor/elsys/elsys.js``; the ERS codec YAMLs point at it): a
run of ``type (1 B) | data`` records, each type with a fixed data length, numbers big-endian.
Types with a canonical metric:

====  ====  ==========================================================
type  size  meaning
====  ====  ==========================================================
0x01  2     temperature, int16 / 10 degC
0x02  1     relative humidity, uint8 %
0x04  2     light, uint16 lux
0x06  2     CO2, uint16 ppm
0x07  2     VDD (battery), uint16 mV
0x0E  2     external distance sensor, uint16 mm (0 / 0xFFFF: no echo)
0x14  4     pressure, uint32 / 1000 hPa
0x1C  2     TVOC, uint16 ppb
====  ====  ==========================================================

Other types (acceleration, motion count, pulse counters, external probes, occupancy, sound,
Grid-EYE, debug) are consumed by their length and not emitted. Like ``elsys.js``, an unknown type
ends decoding ("something is wrong with data") and the records before it are kept. The decoder
ignores the FPort (Elsys devices default to 5, TTN examples use 1): any application FPort 1..223
is accepted. Example (``vendor/elsys/ers-co2-codec.yaml``): ``01 00E2 02 29 04 0027 05 06 06 0308``
-> 22.6 degC, 41 %RH, 39 lx, motion 6, 776 ppm.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

CODEC_IDS = (
    "elsys-ers",
    "elsys-ers-lite",
    "elsys-ers-co2",
    "elsys-ers-co2-lite",
    "elsys-ers-voc",
    "elsys-ers-sound",
    "elsys-ers-eye",
)

NO_ECHO = frozenset({0x0000, 0xFFFF})
"""External distance values that mean no echo."""


def _distance(raw: int) -> float:
    if raw in NO_ECHO:
        raise CodecError("sensor_sentinel", f"Elsys distance {raw:#06x}: no echo")
    return float(raw)


# type -> (data length, None or (struct code, metric, unit, raw -> value))
_Conv = tuple[str, str, str, Callable[[int], float]]
TYPES: dict[int, tuple[int, _Conv | None]] = {
    0x01: (2, (">h", "temperature", "degC", lambda r: r / 10)),
    0x02: (1, (">B", "relativeHumidity", "1", lambda r: r / 100)),
    0x03: (3, None),  # acceleration x, y, z
    0x04: (2, (">H", "illuminance", "lx", float)),
    0x05: (1, None),  # PIR motion count
    0x06: (2, (">H", "co2", "ppm", float)),
    0x07: (2, (">H", "batteryVoltage", "V", lambda r: r / 1000)),
    0x08: (2, None),  # analog input 1, mV
    0x09: (6, None),  # GPS
    0x0A: (2, None),  # pulse 1
    0x0B: (4, None),  # pulse 1 absolute
    0x0C: (2, None),  # external temperature 1
    0x0D: (1, None),  # external digital input
    0x0E: (2, (">H", "distance", "mm", _distance)),
    0x0F: (1, None),  # accelerometer motion count
    0x10: (4, None),  # IR internal + external temperature
    0x11: (1, None),  # occupancy
    0x12: (1, None),  # water leak
    0x13: (65, None),  # Grid-EYE
    0x14: (4, (">I", "pressure", "hPa", lambda r: r / 1000)),
    0x15: (2, None),  # sound peak, average
    0x16: (2, None),  # pulse 2
    0x17: (4, None),  # pulse 2 absolute
    0x18: (2, None),  # analog input 2
    0x19: (2, None),  # external temperature 2
    0x1A: (1, None),  # external digital input 2
    0x1B: (4, None),  # load cell, uV
    0x1C: (2, (">H", "tvoc", "ppb", float)),
    0x3D: (4, None),  # debug
}
"""Elsys record types: data length and, when canonical, how to read them (elsys.js)."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an Elsys ERS-family uplink.

    Args:
        fport: LoRaWAN FPort (1..223).
        payload: FRMPayload bytes.

    Returns:
        ``temperature`` (degC), ``relativeHumidity`` (0..1), ``illuminance`` (lx), ``co2``
        (ppm), ``batteryVoltage`` (V), ``distance`` (mm), ``pressure`` (hPa), ``tvoc`` (ppb),
        each only when its record is present.

    Raises:
        CodecError: ``unknown_fport`` (0 or > 223), ``short_frame`` (empty, or a record cut
            short), ``sensor_sentinel`` (external distance 0 or 0xFFFF).
    """
    if not 1 <= fport <= 223:
        raise CodecError("unknown_fport", f"Elsys: FPort {fport} is not an application port")
    if not payload:
        raise CodecError("short_frame", "Elsys: empty payload")
    out: list[RawReading] = []
    i = 0
    while i < len(payload):
        rtype = payload[i]
        if rtype not in TYPES:
            break  # elsys.js: unknown type ends decoding
        size, conv = TYPES[rtype]
        if i + 1 + size > len(payload):
            raise CodecError("short_frame", f"Elsys type {rtype:#04x} needs {size} bytes at offset {i + 1}")
        if conv is not None:
            fmt, metric, unit, func = conv
            (raw,) = struct.unpack_from(fmt, payload, i + 1)
            out.append(RawReading(metric, float(func(raw)), unit))
        i += 1 + size
    return out
