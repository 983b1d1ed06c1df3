"""Milesight AM319 (HCHO variant) indoor air-quality sensor (FPort 85 TLV, with history records).

Follows Milesight-IoT/SensorDecoders ``am-series/am319-hcho/am319-hcho-decoder.js`` (AM319 HCHO
v2): the AM308 channels (see :mod:`ingest.codecs.milesight_am308`) plus ``0A 7D`` formaldehyde
uint16 LE / 100 mg/m3; history ``20 CE`` / ``21 CE`` as AM308 followed by HCHO. Example
(TheThingsNetwork/lorawan-devices ``vendor/milesight-iot/am319-codec.yaml``):
``03673401 046865 050001 06CB02 077DA803 087D2500 09736627 0A7D0400 0B7D2000 0C7D3000`` ->
30.8 degC, 50.5 %RH, 936 ppm, tvoc 37 (IAQ 0.37), 1008.6 hPa, 0.04 mg/m3, PM2.5 32, PM10 48.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-am319",)

HCHO = ms.Field("hcho", "mg/m3", "H", 100.0)
"""``0A 7D``: formaldehyde uint16 LE / 100 mg/m3."""

LAYOUT = ms.Layout(
    name="AM319",
    channels={
        **ms.AM300_CHANNELS,
        (0x0A, 0x7D): (HCHO,),
        (0x0B, 0x7D): (ms.PM25,),
        (0x0C, 0x7D): (ms.PM10,),
    },
    history={
        (0x20, 0xCE): (*ms.AM300_HISTORY, ms.PM25, ms.PM10, HCHO),
        (0x21, 0xCE): (*ms.AM300_HISTORY_UGM3, ms.PM25, ms.PM10, HCHO),
    },
    attributes={**ms.AM300_ATTRIBUTES, 0x39: 1},
)
"""AM319 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an AM319 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        The AM308 metrics plus ``hcho`` (mg/m3); history records carry their UTC ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
