"""Map the keys of network-server-decoded objects (TTN ``decoded_payload``, ChirpStack ``object``)
onto canonical metrics.

Vendor decoders name the same quantity differently (``battery`` vs ``Bat``, ``humidity`` vs
``relative_humidity_2``, ``pm2.5`` vs ``pm2_5``); CayenneLPP decoders append ``_<channel>``.
The table below lists the names seen in the vendors' decoders in TheThingsNetwork/lorawan-devices
and Milesight-IoT/SensorDecoders. Unknown keys are ignored, not guessed.
"""

from __future__ import annotations

import math
import re
from typing import Any

from core.model import RawReading

# vendor key (lower case, CayenneLPP channel suffix removed) -> (metric, unit of the vendor value)
KEYS: dict[str, tuple[str, str]] = {
    "battery": ("batteryLevel", "%"),
    "battery_level": ("batteryLevel", "%"),
    "batterylevel": ("batteryLevel", "1"),
    "bat": ("batteryVoltage", "V"),
    "bat_v": ("batteryVoltage", "V"),
    "battery_vol": ("batteryVoltage", "V"),
    "battery_voltage": ("batteryVoltage", "V"),
    "distance": ("distance", "mm"),
    "distance_mm": ("distance", "mm"),
    "proxx_mm": ("distance", "mm"),
    "proxx": ("distance", "cm"),
    "fillinglevel": ("fillingLevel", "1"),
    "fillinglvl": ("fillingLevel", "%"),
    "temperature": ("temperature", "degC"),
    "temp": ("temperature", "degC"),
    "tempc_sht": ("temperature", "degC"),
    "air_temperature": ("temperature", "degC"),
    "humidity": ("relativeHumidity", "%"),
    "relative_humidity": ("relativeHumidity", "%"),
    "relativehumidity": ("relativeHumidity", "1"),
    "hum_sht": ("relativeHumidity", "%"),
    "air_humidity": ("relativeHumidity", "%"),
    "co2": ("co2", "ppm"),
    "co2_ppm": ("co2", "ppm"),
    "tvoc": ("tvoc", "ppb"),
    "tvoc_ppb": ("tvoc", "ppb"),
    "hcho": ("hcho", "mg/m3"),
    "pm1": ("pm1", "ug/m3"),
    "pm1_0": ("pm1", "ug/m3"),
    "pm2.5": ("pm25", "ug/m3"),
    "pm2_5": ("pm25", "ug/m3"),
    "pm25": ("pm25", "ug/m3"),
    "pm10": ("pm10", "ug/m3"),
    "pressure": ("pressure", "hPa"),
    "barometric_pressure": ("pressure", "hPa"),
}

_FLAGS: dict[str, tuple[str, dict[str, float]]] = {
    "tilt": ("tilt", {"tilt": 1.0, "normal": 0.0, "true": 1.0, "false": 0.0}),
    "position": ("tilt", {"tilt": 1.0, "normal": 0.0}),
}

_SUFFIX = re.compile(r"_\d+$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict) and "value" in value:  # Decentlab {"value": .., "unit": ..}
        return _number(value["value"])
    if isinstance(value, str):
        head = value.strip().split(" ")[0]
        try:
            return float(head)
        except ValueError:
            return None
    return None


def readings_from_object(obj: dict[str, Any]) -> list[RawReading]:
    """Canonical raw readings from a decoded object; unknown keys are skipped.

    Values may be numbers, numeric strings (``"2799 mm"``) or Decentlab ``{"value": x}`` objects.
    Non-numeric strings for a known key (``"No Sensor"``) yield a reading with ``nan`` so that
    validation rejects the message as a sensor sentinel instead of silently dropping it.

    Returns:
        list of :class:`RawReading` with vendor units; :func:`core.units.convert` brings them to
        canonical units during validation.
    """
    out: list[RawReading] = []
    for key, raw in obj.items():
        k = _SUFFIX.sub("", key.lower())
        if k in _FLAGS:
            metric, mapping = _FLAGS[k]
            flag = mapping.get(str(raw).lower()) if not isinstance(raw, int | float) else float(bool(raw))
            if flag is not None:
                out.append(RawReading(metric, flag, "1"))
            continue
        if k not in KEYS:
            continue
        metric, unit = KEYS[k]
        value = _number(raw)
        out.append(RawReading(metric, value if value is not None else math.nan, unit))
    return out
