"""Encoders for Milesight TLV uplinks (FPort 85), the inverse of :mod:`ingest.codecs` Milesight codecs.

Layout: Milesight-IoT/SensorDecoders ``em-series/em310-udl/README.md`` (channel id, channel type,
little-endian data).
"""

from __future__ import annotations

import struct

FPORT = 85
"""FPort Milesight devices send telemetry on."""


def encode_em310_udl(distance_mm: int, battery_pct: int, tilt: bool = False) -> bytes:
    """Build an EM310-UDL periodic uplink: battery, distance, position.

    Args:
        distance_mm: distance sensor-to-surface, mm, 0..65535 (0 is the no-echo code).
        battery_pct: battery state of charge, % 0..100.
        tilt: True when the device reports itself tilted.

    Returns:
        10 bytes ``01 75 <bat> 03 82 <dist LE16> 04 00 <0|1>`` to send on FPort 85.

    Raises:
        ValueError: a value outside its field's range.
    """
    if not 0 <= distance_mm <= 0xFFFF:
        raise ValueError(f"distance_mm {distance_mm} outside 0..65535")
    if not 0 <= battery_pct <= 100:
        raise ValueError(f"battery_pct {battery_pct} outside 0..100")
    return (
        bytes((0x01, 0x75, battery_pct))
        + bytes((0x03, 0x82)) + struct.pack("<H", distance_mm)
        + bytes((0x04, 0x00, 1 if tilt else 0))
    )
