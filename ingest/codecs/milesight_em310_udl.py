"""Milesight EM310-UDL ultrasonic distance/level sensor (FPort 85 TLV).

Follows Milesight-IoT/SensorDecoders ``em-series/em310-udl/em310-udl-decoder.js`` (and its
README payload table): ``01 75`` battery uint8 %, ``03 82`` distance uint16 LE mm, ``04 00``
position (0 normal, 1 tilt). The firmware has no history or alarm records. Example from the same
README and TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/em310-udl-codec.yaml``:
``01755C 03824408 040001`` -> battery 92 %, distance 2116 mm, tilt.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-em310-udl",)

LAYOUT = ms.Layout(
    name="EM310-UDL",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x82): (ms.DISTANCE,),
        (0x04, 0x00): (ms.POSITION,),
    },
    attributes={0x02: 2, 0x06: 9},
)
"""EM310-UDL channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an EM310-UDL uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel`` (0..1), ``distance`` (mm), ``tilt`` (0.0/1.0), each only when present.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``, or ``sensor_sentinel`` when
            the distance is 0 or 0xFFFF (no echo).
    """
    return ms.decode(LAYOUT, fport, payload)
