"""The canonical metric table: names, units, physical ranges and sources.

Names follow the FIWARE Smart Data Models ``WasteContainer`` and ``AirQualityObserved``
(https://github.com/smart-data-models/dataModel.WasteManagement,
https://github.com/smart-data-models/dataModel.Environment). Fractions (fill, humidity,
battery) are stored 0..1 as FIWARE does. Status flags are 0.0 / 1.0.

Ranges are the widest values a working sensor can report (datasheets cited per row); a value
outside is rejected as ``out_of_range`` by :mod:`ingest.validate`.

``decimals`` is how finely a value is shown (API answers, alert reasons): the step the sensors
named in the row resolve, so a computed ``0.7759999999999999`` reads ``0.776``. Stored values keep
every digit; only what people and clients read is rounded (:func:`shown`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One canonical metric.

    Attributes:
        name: InfluxDB field name and API name.
        unit: canonical unit symbol (``"1"`` = dimensionless fraction or flag).
        low: lowest physically valid value, inclusive.
        high: highest physically valid value, inclusive.
        description: what it is, with the source of the name and range.
        decimals: digits after the point worth showing (the sensor's resolution; see the row).
    """

    name: str
    unit: str
    low: float
    high: float
    description: str
    decimals: int


_ROWS = [
    MetricSpec("fillingLevel", "1", 0.0, 1.0,
               "Bin fill level, fraction of the usable depth (FIWARE WasteContainer.fillingLevel); "
               "0.001 = 1 mm of a 1 m bin, the EM310-UDL's resolution.", 3),
    MetricSpec("distance", "mm", 0.0, 20000.0,
               "Ultrasonic/ToF distance sensor to waste surface "
               "(EM310-UDL 20-450 cm, LDDS75 280-7500 mm; both 1 mm steps).", 0),
    MetricSpec("temperature", "degC", -40.0, 125.0,
               "Air or device temperature (FIWARE temperature; DS18B20/SHT range -40..125 degC, 0.1 degC).", 1),
    MetricSpec("relativeHumidity", "1", 0.0, 1.0,
               "Relative humidity, fraction (FIWARE AirQualityObserved.relativeHumidity; SHT3x 0.1 % RH).", 3),
    MetricSpec("pm1", "ug/m3", 0.0, 1000.0, "PM1 mass concentration (FIWARE pm1; PMS5003 0.1 ug/m3).", 1),
    MetricSpec("pm25", "ug/m3", 0.0, 1000.0,
               "PM2.5 mass concentration (FIWARE pm25; SDS011 range 0-999.9 ug/m3 in 0.1 steps).", 1),
    MetricSpec("pm10", "ug/m3", 0.0, 1000.0,
               "PM10 mass concentration (FIWARE pm10; SDS011 range 0-999.9 ug/m3 in 0.1 steps).", 1),
    MetricSpec("no2", "ug/m3", 0.0, 10000.0, "Nitrogen dioxide (FIWARE no2), 0.1 ug/m3.", 1),
    MetricSpec("so2", "ug/m3", 0.0, 10000.0, "Sulphur dioxide (FIWARE so2), 0.1 ug/m3.", 1),
    MetricSpec("o3", "ug/m3", 0.0, 10000.0, "Ozone (FIWARE o3), 0.1 ug/m3.", 1),
    MetricSpec("co", "ug/m3", 0.0, 200000.0, "Carbon monoxide (FIWARE co), ug/m3 as in ISPU tables, 0.1.", 1),
    MetricSpec("co2", "ppm", 0.0, 40000.0, "Carbon dioxide (FIWARE co2; NDIR 400-5000/10000/40000 ppm, 1 ppm).", 0),
    MetricSpec("tvoc", "ppb", 0.0, 60000.0,
               "Total volatile organic compounds (AM107 ppb, 1 ppb; Milesight IAQ level x100 noted per codec).", 0),
    MetricSpec("hcho", "mg/m3", 0.0, 5.0, "Formaldehyde (Milesight AM319-HCHO 0-5 mg/m3, 0.01 mg/m3).", 2),
    MetricSpec("pressure", "hPa", 300.0, 1100.0,
               "Barometric pressure (FIWARE atmosphericPressure; BME280 range 300-1100 hPa, 0.1 hPa).", 1),
    MetricSpec("batteryLevel", "1", 0.0, 1.0,
               "Battery state of charge, fraction (FIWARE batteryLevel; devices report whole %).", 2),
    MetricSpec("batteryVoltage", "V", 0.0, 15.0, "Battery voltage (Dragino, Decentlab, WILSEN report volts, 1 mV).", 3),
    MetricSpec("tilt", "1", 0.0, 1.0, "1 when the sensor reports tilt/position abnormal (Milesight).", 0),
    MetricSpec("lidOpen", "1", 0.0, 1.0, "1 when the lid is open (FIWARE WasteContainer status 'lid open').", 0),
    MetricSpec("alarm", "1", 0.0, 1.0, "1 when the device raised its own threshold alarm.", 0),
    MetricSpec("illuminance", "lx", 0.0, 200000.0, "Illuminance (FIWARE illuminance), 1 lx.", 0),
    MetricSpec("rssi", "dBm", -200.0, 20.0, "Received signal strength of the uplink, whole dBm.", 0),
]

METRICS: dict[str, MetricSpec] = {m.name: m for m in _ROWS}
"""Canonical metrics by name."""

BIN_METRICS = frozenset({"fillingLevel", "distance", "temperature", "batteryLevel", "batteryVoltage",
                         "tilt", "lidOpen", "alarm", "rssi"})
"""Metrics a bin sensor may report."""


def shown(name: str, value: float | None) -> float | None:
    """``value`` of canonical metric ``name`` rounded to its ``decimals``, as people and clients read it.

    ``None`` stays ``None``; a name that is not canonical is returned unrounded.
    """
    m = METRICS.get(name)
    return value if value is None or m is None else round(value, m.decimals)


def shown_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """An alert's ``details`` as people and clients read them: a value under a canonical metric's name
    (``"batteryLevel": 0.30000000000000004``) and the ``value`` of the ``metric`` it names (``stuck_sensor``)
    rounded by :func:`shown`; every other entry as it is. ``None`` gives ``{}``; the input is not changed."""
    out = dict(details or {})
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = shown(key, value)
    metric, value = out.get("metric"), out.get("value")
    if isinstance(metric, str) and isinstance(value, float):
        out["value"] = shown(metric, value)
    return out


def spec(name: str) -> MetricSpec:
    """Return the spec of canonical metric ``name``.

    Raises:
        KeyError: ``name`` is not canonical.
    """
    return METRICS[name]
