"""Milesight AM107 indoor ambience sensor (FPort 85 TLV).

Follows Milesight-IoT/SensorDecoders ``am-series/am107/am107-decoder.js`` and its field catalogue
``am107-codec.json`` (units):

======  ====  ======================================================================
id      type  data
======  ====  ======================================================================
0x01    0x75  battery uint8 %
0x03    0x67  temperature int16 LE / 10 degC
0x04    0x68  humidity uint8 / 2 %RH
0x05    0x6A  PIR activity count uint16 (consumed: no canonical metric)
0x06    0x65  illumination uint16 lx, infrared+visible uint16, infrared uint16 (raw ADC)
0x07    0x7D  CO2 uint16 LE ppm
0x08    0x7D  TVOC uint16 LE ppb (catalogue unit ppb)
0x09    0x73  pressure uint16 LE / 10 hPa
======  ====  ======================================================================

Examples (TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/am107-codec.yaml``):
``077DE704 087D0700 09733F27`` -> 1255 ppm, 7 ppb, 1004.7 hPa.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-am107",)

LAYOUT = ms.Layout(
    name="AM107",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x67): (ms.TEMPERATURE,),
        (0x04, 0x68): (ms.HUMIDITY,),
        (0x05, 0x6A): (ms.skip("H"),),
        (0x06, 0x65): (ms.Field("illuminance", "lx", "H"), ms.skip("H"), ms.skip("H")),
        (0x07, 0x7D): (ms.CO2,),
        (0x08, 0x7D): (ms.Field("tvoc", "ppb", "H"),),
        (0x09, 0x73): (ms.PRESSURE,),
    },
    attributes={**ms.AM_SCREEN_ATTRIBUTES, 0x08: 6},  # AM107 serial number: 6 bytes
)
"""AM107 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an AM107 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel``, ``relativeHumidity`` (0..1), ``temperature`` (degC), ``illuminance``
        (lx), ``co2`` (ppm), ``tvoc`` (ppb), ``pressure`` (hPa), each only when present.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
