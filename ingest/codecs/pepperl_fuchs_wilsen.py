"""Pepperl+Fuchs WILSEN.sonic.level and WILSEN.sonic.distance ultrasonic sensors (LoRaWAN).

Follows TheThingsNetwork/lorawan-devices ``vendor/pepperl-fuchs/wilsen.js`` (the decoder both
``wilsen-sonic-level-codec.yaml`` and ``wilsen-sonic-distance-codec.yaml`` name). The uplink is a
run of self-describing records, numbers big-endian::

    len (1 B) | type (2 B) | value (len - 2 B)

=======  =====  ====================================================================
type     value  meaning
=======  =====  ====================================================================
0x0201   4      temperature, IEEE-754 float32 degC (vendor rounds to 0.1)
0x0B01   2      proximity (distance) uint16 cm
0x0B02   2      proximity uint16 mm (device set to mm resolution)
0x0B06   1      filling level uint8 %, computed on the device (WILSEN.sonic.level)
0x0B07   1      echo amplitude uint8 (not emitted)
0x5101   1      battery uint8, 0.1 V
others   any    serial number, counters, GPS position, downlink acknowledgements: skipped
=======  =====  ====================================================================

A proximity of 0 or 0xFFFF is ``sensor_sentinel`` (no echo). GPS latitude/longitude (0x5001,
0x5002) have no canonical metric: the registry holds the bin's position. Status frames with
only counters give the battery alone. The vendor decoder ignores the FPort; the sensors send on
FPort 1, so any application FPort 1..223 is accepted.
Example (``wilsen-sonic-distance-codec.yaml``): ``04 0B02 06B9 | 03 0B07 FF | 06 0201 41B9999A |
03 5101 24`` -> 1721 mm, amplitude 255, 23.2 degC, 3.6 V.
"""

from __future__ import annotations

import math
import struct

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

CODEC_IDS = ("pepperl-fuchs-wilsen-sonic-level", "pepperl-fuchs-wilsen-sonic-distance")

NO_ECHO = frozenset({0x0000, 0xFFFF})
"""Proximity values that mean no echo."""

_SIZES = {0x0201: 4, 0x0B01: 2, 0x0B02: 2, 0x0B06: 1, 0x0B07: 1, 0x5101: 1}
"""Value length of each record type this codec reads."""


def _proximity(raw: int, mm_per_unit: int) -> RawReading:
    if raw in NO_ECHO:
        raise CodecError("sensor_sentinel", f"proximity {raw:#06x}: no echo")
    return RawReading("distance", float(raw * mm_per_unit), "mm")


def _record(rtype: int, value: bytes) -> RawReading | None:
    if rtype == 0x0201:
        (temp,) = struct.unpack(">f", value)
        return RawReading("temperature", round(temp, 1) if math.isfinite(temp) else temp, "degC")
    if rtype == 0x0B01:
        return _proximity(int.from_bytes(value, "big"), 10)
    if rtype == 0x0B02:
        return _proximity(int.from_bytes(value, "big"), 1)
    if rtype == 0x0B06:
        return RawReading("fillingLevel", value[0] / 100.0, "1")
    if rtype == 0x5101:
        return RawReading("batteryVoltage", value[0] / 10.0, "V")
    return None  # amplitude


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode a WILSEN.sonic.level / .distance uplink.

    Args:
        fport: LoRaWAN FPort (1..223; the sensors use 1).
        payload: FRMPayload bytes.

    Returns:
        ``distance`` (mm), ``fillingLevel`` (0..1, level variant), ``temperature`` (degC),
        ``batteryVoltage`` (V), each only when its record is present.

    Raises:
        CodecError: ``unknown_fport`` (0 or > 223), ``short_frame`` (empty, or a record longer
            than the bytes left), ``bad_frame`` (record length < 2, or a known type with the
            wrong value length), ``sensor_sentinel`` (proximity 0 or 0xFFFF).
    """
    if not 1 <= fport <= 223:
        raise CodecError("unknown_fport", f"WILSEN: FPort {fport} is not an application port")
    if not payload:
        raise CodecError("short_frame", "WILSEN: empty payload")
    out: list[RawReading] = []
    i = 0
    while i < len(payload):
        length = payload[i]
        if length < 2:
            raise CodecError("bad_frame", f"WILSEN: record length {length} at offset {i}")
        if i + 1 + length > len(payload):
            raise CodecError("short_frame", f"WILSEN: record at {i} needs {length} bytes, {len(payload) - i - 1} left")
        rtype = int.from_bytes(payload[i + 1:i + 3], "big")
        value = payload[i + 3:i + 1 + length]
        expected = _SIZES.get(rtype)
        if expected is not None:
            if len(value) != expected:
                raise CodecError("bad_frame", f"WILSEN: type {rtype:#06x} value of {len(value)} bytes")
            reading = _record(rtype, value)
            if reading is not None:
                out.append(reading)
        i += 1 + length
    return out
