"""Milesight EM500-UDL ultrasonic distance sensor (FPort 85 TLV, with history records).

Follows Milesight-IoT/SensorDecoders ``em-series/em500-udl/em500-udl-decoder.js``:
``01 75`` battery uint8 %; ``03 82`` distance uint16 LE mm; ``83 E9`` distance uint16 LE / 10,
distance mutation uint16 LE / 10 (consumed) and alarm byte (0 normal, 1 threshold alarm,
2 mutation alarm); ``20 CE`` history: uint32 LE Unix time + distance uint16 LE mm.

The vendor decoder divides the distance of the ``83 E9`` alarm record by 10 while the field
catalogue (``em500-udl-codec.json``) lists distance in mm for both; the decoder is followed.
Example (TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/em500-udl-codec.yaml``):
``017564 03821E00`` -> 100 %, 30 mm.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-em500-udl",)

_DISTANCE_DECI = ms.Field("distance", "mm", "H", 10.0, sentinels=ms.DISTANCE.sentinels)

LAYOUT = ms.Layout(
    name="EM500-UDL",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x82): (ms.DISTANCE,),
        (0x83, 0xE9): (_DISTANCE_DECI, ms.skip("H"), ms.ALARM3),
    },
    history={(0x20, 0xCE): (ms.DISTANCE,)},
    attributes={
        0x02: 2, 0x06: 9, 0x11: 4, 0x17: 2, 0x1C: 2, 0x27: 1, 0x28: 1, 0x35: 8, 0x3B: 1, 0x4A: 1,
        0x68: 1, 0x69: 1, 0x6A: 3, 0x84: 1, 0x96: 8, 0xF1: 4, 0xF2: 2, 0xF5: 1,
    },
)
"""EM500-UDL channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an EM500-UDL uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel`` (0..1), ``distance`` (mm), ``alarm`` (0.0/1.0); history records give
        ``distance`` with their own UTC ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``, or ``sensor_sentinel`` when a
            live distance is 0 or 0xFFFF (no echo).
    """
    return ms.decode(LAYOUT, fport, payload)
