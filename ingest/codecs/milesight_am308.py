"""Milesight AM308 indoor ambience sensor with PM2.5/PM10 (FPort 85 TLV, with history records).

Follows Milesight-IoT/SensorDecoders ``am-series/am308/am308-decoder.js`` (AM308 v2): the AM307
channels (see :mod:`ingest.codecs.milesight_am307`) plus ``0B 7D`` PM2.5 and ``0C 7D`` PM10,
uint16 LE ug/m3; history ``20 CE`` / ``21 CE`` as AM307 followed by PM2.5 and PM10. Example, the
vendor catalogue ``am308-codec.json`` sample
``03670A01 046858 050001 06CB01 077DFF02 087DE300 0973FE27 0B7D0700 0C7D0800 017562`` ->
26.6 degC, 44 %RH, 767 ppm, tvoc 227 (IAQ 2.27), 1023.8 hPa, PM2.5 7, PM10 8 ug/m3, 98 %.
"""

from __future__ import annotations

from ingest.codecs import _milesight as ms
from lorong.core.model import RawReading

CODEC_IDS = ("milesight-am308",)

LAYOUT = ms.Layout(
    name="AM308",
    channels={**ms.AM300_CHANNELS, (0x0B, 0x7D): (ms.PM25,), (0x0C, 0x7D): (ms.PM10,)},
    history={
        (0x20, 0xCE): (*ms.AM300_HISTORY, ms.PM25, ms.PM10),
        (0x21, 0xCE): (*ms.AM300_HISTORY_UGM3, ms.PM25, ms.PM10),
    },
    attributes=ms.AM300_ATTRIBUTES,
)
"""AM308 channel table."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an AM308 uplink.

    Args:
        fport: LoRaWAN FPort (85).
        payload: FRMPayload bytes.

    Returns:
        The AM307 metrics plus ``pm25`` and ``pm10`` (ug/m3); history records carry their UTC
        ``ts``.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return ms.decode(LAYOUT, fport, payload)
