"""Milesight EM400 family: EM400-MUD (multi-function bin), EM400-UDL (ultrasonic) and EM400-TLD (ToF laser).

The three share one uplink layout on FPort 85. Follows Milesight-IoT/SensorDecoders
``em-series/em400-mud/em400-mud-decoder.js``, ``em-series/em400-udl/em400-udl-decoder.js`` and
``em-series/em400-tld/em400-tld-decoder.js``:

======  ====  =====================================================================
id      type  data
======  ====  =====================================================================
0x01    0x75  battery uint8 %
0x03    0x67  temperature int16 LE / 10 degC
0x04    0x82  distance uint16 LE mm
0x05    0x00  position 0 normal / 1 tilt
0x83    0x67  temperature int16 LE / 10 + alarm byte (0 released, 1 threshold alarm)
0x84    0x82  distance uint16 LE + alarm byte (0 released, 1 threshold alarm)
0x88    0x00  disassembly alarm (EM400-TLD): consumed, no canonical metric
======  ====  =====================================================================

Example (TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/em400-mud-codec.yaml``):
``01755C 03670101 04824408 050001`` -> 92 %, 25.7 degC, 2116 mm, tilt.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-em400-mud", "milesight-em400-udl", "milesight-em400-tld")

LAYOUT = ms.Layout(
    name="EM400",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x67): (ms.TEMPERATURE,),
        (0x04, 0x82): (ms.DISTANCE,),
        (0x05, 0x00): (ms.POSITION,),
        (0x83, 0x67): (ms.TEMPERATURE, ms.ALARM),
        (0x84, 0x82): (ms.DISTANCE, ms.ALARM),
        (0x88, 0x00): (ms.skip("B"),),
    },
    # handle_downlink_response of the three decoders (union; 0xA5/0xA6 carry no data).
    attributes={
        0x02: 2, 0x06: 9, 0x13: 1, 0x1C: 2, 0x28: 1, 0x3E: 1, 0x4A: 1, 0x56: 1, 0x70: 2, 0x71: 1,
        0x77: 2, 0xA1: 1, 0xA2: 2, 0xA3: 1, 0xA4: 1, 0xA5: 0, 0xA6: 0,
    },
)
"""EM400-MUD/UDL/TLD channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an EM400-MUD/UDL/TLD uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel`` (0..1), ``temperature`` (degC), ``distance`` (mm), ``tilt`` and ``alarm``
        (0.0/1.0), each only when present in the frame.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``, or ``sensor_sentinel`` when
            the distance is 0 or 0xFFFF (no echo).
    """
    return ms.decode(LAYOUT, fport, payload)
