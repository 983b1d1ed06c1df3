"""Decentlab DL-LP8P CO2, temperature, humidity and barometric pressure sensor (Senseair LP8).

Follows decentlab/decentlab-decoders ``DL-LP8P/DL-LP8P.py`` (protocol v2, see
:mod:`ingest.codecs._decentlab`). Groups in flag order:

0. SHT2x air temperature and humidity (formulas as DL-PM)
1. barometer temperature ((x - 5000) / 100 degC, not emitted) and pressure (x * 2 Pa -> hPa)
2. eight words: CO2 (x - 32768 ppm, emitted), CO2 low-pass filtered, CO2 sensor temperature,
   two capacitor voltages, sensor status, two raw IR readings (not emitted)
3. battery, mV

Example (TheThingsNetwork/lorawan-devices ``vendor/decentlab/dl-lp8p-codec.yaml``):
``02 0578 000F 67BD 618D 1CED BD10 81D9 ...`` -> 24.357 degC, 41.63 %RH, 968.00 hPa, 473 ppm,
3.109 V.
"""

from __future__ import annotations

from ingest.codecs import _decentlab as dl
from lorong.core.model import RawReading

CODEC_IDS = ("decentlab-dl-lp8p",)

SENSORS = (
    dl.Group(2, (
        dl.Value("temperature", "degC", lambda x: dl.sht21_temperature(x[0])),
        dl.Value("relativeHumidity", "1", lambda x: dl.sht21_humidity(x[1])),
    )),
    dl.Group(2, (dl.Value("pressure", "hPa", lambda x: dl.pressure_hpa(x[1])),)),
    dl.Group(8, (dl.Value("co2", "ppm", lambda x: dl.co2_offset(x[0])),)),
    dl.battery_group(),
)
"""DL-LP8P sensor groups in flag-bit order."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode a DL-LP8P uplink.

    Args:
        fport: LoRaWAN FPort (1..223).
        payload: FRMPayload bytes.

    Returns:
        ``temperature`` (degC), ``relativeHumidity`` (0..1), ``pressure`` (hPa), ``co2`` (ppm),
        ``batteryVoltage`` (V), each when its group is flagged.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return dl.decode("DL-LP8P", SENSORS, fport, payload)
