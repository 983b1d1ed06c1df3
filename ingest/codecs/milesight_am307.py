"""Milesight AM307 indoor ambience sensor with screen (FPort 85 TLV, with history records).

Follows Milesight-IoT/SensorDecoders ``am-series/am307/am307-decoder.js`` (AM307 v2):
``01 75`` battery %, ``03 67`` temperature int16 / 10 degC, ``04 68`` humidity uint8 / 2 %RH,
``05 00`` PIR and ``06 CB`` light level 0-5 (consumed), ``07 7D`` CO2 ppm, ``08 7D`` TVOC as IAQ
index x 100 (emitted raw under ``tvoc``, see :data:`ingest.codecs._milesight.TVOC_IAQ`), ``08 E6``
TVOC ug/m3 (consumed), ``09 73`` pressure uint16 / 10 hPa, ``0E 01`` buzzer (consumed);
history ``20 CE`` / ``21 CE``: uint32 time, temperature, humidity uint16 / 2, PIR, light level, CO2,
TVOC, pressure. Example (TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/am307-codec.yaml``):
``077DE704 087D0700 09733F27`` -> 1255 ppm, tvoc 7 (IAQ 0.07), 1004.7 hPa.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-am307",)

LAYOUT = ms.Layout(
    name="AM307",
    channels=ms.AM300_CHANNELS,
    history={(0x20, 0xCE): ms.AM300_HISTORY, (0x21, 0xCE): ms.AM300_HISTORY_UGM3},
    attributes=ms.AM300_ATTRIBUTES,
)
"""AM307 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an AM307 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel``, ``relativeHumidity`` (0..1), ``temperature`` (degC), ``co2`` (ppm),
        ``tvoc`` (IAQ x 100), ``pressure`` (hPa); history records carry their UTC ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
