"""Decentlab DL-MBX ultrasonic distance / level sensor (MaxBotix HRXL-MaxSonar-WR inside).

Follows decentlab/decentlab-decoders ``DL-MBX/DL-MBX.py`` (protocol v2, see
:mod:`ingest.codecs._decentlab`). Groups: 0 = distance (mm), number of valid samples;
1 = battery (mV). Example (TheThingsNetwork/lorawan-devices vendor decentlab / the decoder's own
sample): ``02 012F 0003 04D2 0001 0BB1`` -> 1234 mm, 1 valid sample, 2.993 V.

Sentinels (``sensor_sentinel``): 0 valid samples (no echo in the measuring burst), distance 0, and
the MaxBotix HRXL "no target" outputs, the range maximum 5000 mm (5 m models) or 9999 mm (10 m
models), per the MaxBotix HRXL-MaxSonar-WR datasheet.
"""

from __future__ import annotations

from ingest.codecs import _decentlab as dl
from lorong.core.model import RawReading

CODEC_IDS = ("decentlab-dl-mbx",)

NO_TARGET_MM = frozenset({0, 5000, 9999})
"""Distance words that mean no echo / no target."""


def _no_echo(x: dl.Words) -> str | None:
    if x[1] == 0:
        return "0 valid samples: no echo"
    if x[0] in NO_TARGET_MM:
        return f"distance {x[0]} mm is a no-target code"
    return None


SENSORS = (
    dl.Group(2, (dl.Value("distance", "mm", lambda x: float(x[0])),), sentinel=_no_echo),
    dl.battery_group(),
)
"""DL-MBX sensor groups in flag-bit order."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode a DL-MBX uplink.

    Args:
        fport: LoRaWAN FPort (1..223; the device uses 1).
        payload: FRMPayload bytes.

    Returns:
        ``distance`` (mm) and ``batteryVoltage`` (V), each when its group is flagged.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``, ``sensor_sentinel``.
    """
    return dl.decode("DL-MBX", SENSORS, fport, payload)
