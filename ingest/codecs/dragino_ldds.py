"""Dragino LDDS75 / LDDS45 (ultrasonic distance) and LDDS20 (through-tank liquid level), FPort 2.

Big-endian frame, as decoded by TheThingsNetwork/lorawan-devices ``vendor/dragino/ldds20-114.js``
(firmware >= 1.1.4, also used for LDDS75 ``ldds75-114``) and ``vendor/dragino/ldds75.js`` (older
firmware):

=====  ====  ====================================================================================
size   name  meaning
=====  ====  ====================================================================================
2      BAT   battery, ``uint16 & 0x3FFF`` mV
2      DIST  distance, uint16 mm; 0 = no ultrasonic probe, <= 20 = invalid reading (no echo)
1      INT   interrupt flag (consumed)
2      TEMP  DS18B20 probe temperature, int16 / 10 degC; 0x0000 when the optional probe is absent
1      FLAG  sensor flag, 1 = ultrasonic probe detected
=====  ====  ====================================================================================

That is 8 bytes. Older firmware sends 5 bytes (BAT, DIST, INT); the old decoder reports any
other length as ``"No Sensor"``, so a 4-byte frame is ``sensor_sentinel``. Sentinels: distance
0 or <= 20 mm ("No Sensor" / "Invalid Reading" in the vendor decoders) and sensor flag 0 raise
``sensor_sentinel``. TEMP 0x0000 is dropped rather than stored as 0.0 degC, because that is what the
device sends without the optional probe (TTN ``ldds75-114-codec.yaml`` example: ``"0.00"``).
Example: ``0D3B 0AEF 00 0000 01`` -> 3.387 V, 2799 mm.
"""

from __future__ import annotations

import struct

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

CODEC_IDS = ("dragino-ldds75", "dragino-ldds45", "dragino-ldds20")

FPORT = 2
"""Dragino sends sensor data on FPort 2 (FPort 5 is the device-status frame, not decoded)."""

INVALID_MAX_MM = 20
"""Distances at or below this are the firmware's no-echo / invalid codes (``ldds75.js``: < 20,
``ldds20-114.js``: == 20)."""


def _distance(raw: int) -> float:
    if raw == 0:
        raise CodecError("sensor_sentinel", "distance 0: no ultrasonic probe")
    if raw <= INVALID_MAX_MM:
        raise CodecError("sensor_sentinel", f"distance {raw} mm: invalid reading (no echo)")
    return float(raw)


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an LDDS75/LDDS45/LDDS20 uplink.

    Args:
        fport: LoRaWAN FPort (2).
        payload: FRMPayload bytes, 8 (current firmware) or 5 (older firmware) long.

    Returns:
        ``batteryVoltage`` (V), ``distance`` (mm) and, when the DS18B20 probe is fitted,
        ``temperature`` (degC).

    Raises:
        CodecError: ``unknown_fport`` (not 2); ``sensor_sentinel`` (no probe, no echo, or the
            old firmware's 4-byte no-sensor frame); ``short_frame`` (< 4 bytes); ``bad_frame``
            (any other length).
    """
    if fport != FPORT:
        raise CodecError("unknown_fport", f"Dragino LDDS uses FPort {FPORT}, got {fport}")
    n = len(payload)
    if n < 4:
        raise CodecError("short_frame", f"LDDS frame of {n} bytes")
    if n == 4:
        raise CodecError("sensor_sentinel", "4-byte LDDS frame: No Sensor (vendor decoder ldds75.js)")
    if n not in (5, 8):
        raise CodecError("bad_frame", f"LDDS frame of {n} bytes, expected 5 or 8")
    bat_raw, dist_raw = struct.unpack_from(">HH", payload, 0)
    if n == 8:
        (temp_raw,) = struct.unpack_from(">h", payload, 5)
        if payload[7] == 0:
            raise CodecError("sensor_sentinel", "sensor flag 0: no ultrasonic probe detected")
    out = [
        RawReading("batteryVoltage", (bat_raw & 0x3FFF) / 1000.0, "V"),
        RawReading("distance", _distance(dist_raw), "mm"),
    ]
    if n == 8 and temp_raw != 0:
        out.append(RawReading("temperature", temp_raw / 10.0, "degC"))
    return out
