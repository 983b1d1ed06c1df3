"""Decentlab DL-PM particulate matter, temperature, humidity and pressure sensor.

Follows decentlab/decentlab-decoders ``decoders/DL-PM/DL-PM.py`` (protocol v2, see
:mod:`ingest.codecs._decentlab`). Groups in flag order:

0. battery, mV
1. ten words: PM1.0, PM2.5, PM4, PM10 mass concentration (x / 10 ug/m3), typical particle size
   (nm), five number concentrations (1/cm3). PM1.0, PM2.5 and PM10 are emitted; PM4, size and
   number concentrations have no canonical metric.
2. SHT2x air temperature (``175.72 x / 65536 - 46.85`` degC) and humidity
   (``125 x / 65536 - 6`` %)
3. barometric pressure, ``x * 2`` Pa, emitted in hPa

Example (TheThingsNetwork/lorawan-devices ``vendor/decentlab/dl-pm-codec.yaml``):
``02 1B50 000F 0C25 0025 0027 0027 0027 01F5 ... 67BD 618D BD10`` -> 3.109 V, PM1 3.7, PM2.5 3.9,
PM10 3.9 ug/m3, 24.357 degC, 41.63 %RH, 968.00 hPa.
"""

from __future__ import annotations

from ingest.codecs import _decentlab as dl
from lorong.core.model import RawReading

CODEC_IDS = ("decentlab-dl-pm",)

SENSORS = (
    dl.battery_group(),
    dl.Group(10, (
        dl.Value("pm1", "ug/m3", lambda x: x[0] / 10),
        dl.Value("pm25", "ug/m3", lambda x: x[1] / 10),
        dl.Value("pm10", "ug/m3", lambda x: x[3] / 10),
    )),
    dl.Group(2, (
        dl.Value("temperature", "degC", lambda x: dl.sht21_temperature(x[0])),
        dl.Value("relativeHumidity", "1", lambda x: dl.sht21_humidity(x[1])),
    )),
    dl.Group(1, (dl.Value("pressure", "hPa", lambda x: dl.pressure_hpa(x[0])),)),
)
"""DL-PM sensor groups in flag-bit order."""


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode a DL-PM uplink.

    Args:
        fport: LoRaWAN FPort (1..223).
        payload: FRMPayload bytes.

    Returns:
        ``batteryVoltage`` (V), ``pm1``/``pm25``/``pm10`` (ug/m3), ``temperature`` (degC),
        ``relativeHumidity`` (0..1), ``pressure`` (hPa), each when its group is flagged.

    Raises:
        CodecError: ``unknown_fport``, ``short_frame``, ``bad_frame``.
    """
    return dl.decode("DL-PM", SENSORS, fport, payload)
