"""Milesight AM103 indoor temperature/humidity/CO2 sensor (FPort 85 TLV, with history records).

Follows Milesight-IoT/SensorDecoders ``am-series/am103/am103-decoder.js``: ``01 75`` battery
uint8 %, ``03 67`` temperature int16 LE / 10 degC, ``04 68`` humidity uint8 / 2 %RH, ``07 7D`` CO2
uint16 LE ppm, ``20 CE`` history: uint32 LE time, temperature int16 / 10, humidity uint8 / 2,
CO2 uint16. Example (TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/am103-codec.yaml``):
``01755C 03673401 046865 077DE704`` -> 92 %, 30.8 degC, 50.5 %RH, 1255 ppm.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-am103",)

LAYOUT = ms.Layout(
    name="AM103",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x67): (ms.TEMPERATURE,),
        (0x04, 0x68): (ms.HUMIDITY,),
        (0x07, 0x7D): (ms.CO2,),
    },
    history={(0x20, 0xCE): (ms.TEMPERATURE, ms.HUMIDITY, ms.CO2)},
    attributes=ms.AM_SCREEN_ATTRIBUTES,
)
"""AM103 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an AM103 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel``, ``relativeHumidity`` (0..1), ``temperature`` (degC), ``co2`` (ppm);
        history records carry their UTC ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
