"""Milesight EM500-CO2 outdoor CO2/temperature/humidity/pressure sensor (FPort 85 TLV).

Follows Milesight-IoT/SensorDecoders ``em-series/em500-co2/em500-co2-decoder.js``. Unlike the AM
series, CO2 is channel ``05 7D`` and pressure ``06 73``:

======  ====  ===============================================================================
id      type  data
======  ====  ===============================================================================
0x01    0x75  battery uint8 %
0x03    0x67  temperature int16 LE / 10 degC
0x04    0x68  humidity uint8 / 2 %RH
0x05    0x7D  CO2 uint16 LE ppm
0x06    0x73  pressure uint16 LE / 10 hPa
0x83    0xD7  temperature int16 / 10, mutation int16 / 10 (consumed), alarm byte
0x20    0xCE  history: uint32 time, CO2 uint16, pressure uint16 / 10, temperature int16 / 10,
              humidity uint8 / 2
======  ====  ===============================================================================

Alarm byte: the vendor's field catalogue ``em500-co2-codec.json`` says 0 released, 1 threshold
alarm, 2 mutation alarm (as every other Milesight model); the decoder's text map swaps 0 and 1.
The catalogue is followed. Example (``vendor/milesight-iot/em500-co2-codec.yaml``):
``01755C 03673401 046865 057D6704 06736827`` -> 92 %, 30.8 degC, 50.5 %RH, 1127 ppm, 1008.8 hPa.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-em500-co2",)

LAYOUT = ms.Layout(
    name="EM500-CO2",
    channels={
        (0x01, 0x75): (ms.BATTERY,),
        (0x03, 0x67): (ms.TEMPERATURE,),
        (0x04, 0x68): (ms.HUMIDITY,),
        (0x05, 0x7D): (ms.CO2,),
        (0x06, 0x73): (ms.PRESSURE,),
        (0x83, 0xD7): (ms.TEMPERATURE, ms.skip("h"), ms.ALARM3),
    },
    history={(0x20, 0xCE): (ms.CO2, ms.PRESSURE, ms.TEMPERATURE, ms.HUMIDITY)},
    attributes={
        0x02: 2, 0x06: 9, 0x11: 4, 0x17: 2, 0x18: 2, 0x1A: ms.co2_calibration_size, 0x1C: 2,
        0x35: 8, 0x39: 5, 0x3B: 1, 0x68: 1, 0x69: 1, 0x6A: 3, 0x84: 1, 0x87: 3, 0x96: 8, 0xF1: 4,
        0xF2: 2, 0xF5: 1,
    },
)
"""EM500-CO2 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an EM500-CO2 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        ``batteryLevel``, ``relativeHumidity`` (0..1), ``temperature`` (degC), ``co2`` (ppm),
        ``pressure`` (hPa), ``alarm`` (0.0/1.0); history records carry their UTC ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
