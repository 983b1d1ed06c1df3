"""Decentlab DL-IAM indoor ambiance monitor (CO2, TVOC, temperature, humidity, pressure, light).

Follows decentlab/decentlab-decoders ``decoders/DL-IAM/DL-IAM.py`` (protocol v2, see
:mod:`ingest.codecs._decentlab`). Groups in flag order:

0. battery, mV
1. air temperature ``175 x / 65535 - 45`` degC and humidity ``100 x / 65535`` % (SHT3x)
2. barometric pressure, x * 2 Pa -> hPa
3. ambient light: visible+infrared ``ch0``, infrared ``ch1``; illuminance
   ``max(ch0 - 1.64 ch1, 0.59 ch0 - 0.86 ch1, 0) * 1.5504`` lx
4. CO2 (x - 32768 ppm), CO2 sensor status and raw IR reading (not emitted)
5. activity counter (PIR, not emitted)
6. total VOC, ppb

Example from that decoder file: ``02 0BBD 007F 0B92 6A51 5D48 BC4E 0262 0069 81C7 0000 93D4 000B
0111`` -> 2.962 V, ... 455 ppm, 273 ppb.
"""

from __future__ import annotations

from ingest.codecs import _decentlab as dl
from lorong.core.model import RawReading

CODEC_IDS = ("decentlab-dl-iam",)


def illuminance(x: dl.Words) -> float:
    """Illuminance in lx from the two light channels (vendor formula, see module docstring)."""
    return max(1.0 * x[0] - 1.64 * x[1], 0.59 * x[0] - 0.86 * x[1], 0.0) * 1.5504


SENSORS = (
    dl.battery_group(),
    dl.Group(2, (
        dl.Value("temperature", "degC", lambda x: 175 * x[0] / 65535 - 45),
        dl.Value("relativeHumidity", "1", lambda x: x[1] / 65535),
    )),
    dl.Group(1, (dl.Value("pressure", "hPa", lambda x: dl.pressure_hpa(x[0])),)),
    dl.Group(2, (dl.Value("illuminance", "lx", illuminance),)),
    dl.Group(3, (dl.Value("co2", "ppm", lambda x: dl.co2_offset(x[0])),)),
    dl.Group(1, ()),
    dl.Group(1, (dl.Value("tvoc", "ppb", lambda x: float(x[0])),)),
)
"""DL-IAM sensor groups in flag-bit order."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode a DL-IAM uplink.

    Args:
        fport: LoRaWAN FPort (1..223).
        payload: FRMPayload bytes.

    Returns:
        ``batteryVoltage`` (V), ``temperature`` (degC), ``relativeHumidity`` (0..1),
        ``pressure`` (hPa), ``illuminance`` (lx), ``co2`` (ppm), ``tvoc`` (ppb), each when its
        group is flagged.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return dl.decode("DL-IAM", SENSORS, fport, payload)
