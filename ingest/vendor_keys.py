"""Map the keys of network-server-decoded objects (TTN ``decoded_payload``, ChirpStack ``object``,
SenML names) onto canonical metrics.

Vendor decoders name the same quantity differently (``battery`` vs ``Bat``, ``humidity`` vs
``relative_humidity_2``, ``pm2.5`` vs ``pm2_5``); CayenneLPP decoders append ``_<channel>``
(TTN's built-in CayenneLPP formatter: ``temperature_2``, ``relative_humidity_2``,
``barometric_pressure_3``, ``luminosity_4``). The table lists the names seen in the vendors'
decoders in TheThingsNetwork/lorawan-devices and Milesight-IoT/SensorDecoders, plus every
canonical metric name of :mod:`lorong.core.metrics`. Unknown keys are ignored, not guessed.

Lookup: the whole key (lower case) first, so ``pm2_5`` is PM2.5 and not channel 5 of ``pm2``;
then the key without a trailing ``_<digits>`` channel suffix.

Several keys for one metric in one object (``temperature_2`` and ``temperature_3`` from two
probes) keep one value: an unsuffixed key wins over suffixed ones, then the lowest channel.
The others are dropped, since the registry does not say where a second probe sits.

A string that is not a number under a known key is either a vendor's "no value" word
(:data:`SENTINEL_STRINGS`, kept as a ``nan`` reading that validation rejects as
``sensor_sentinel``) or a bad value (``ParseError("bad_value")``): a decoder that emits
``"lots"`` for a distance is broken, not reporting a missing sensor.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lorong.core.errors import ParseError
from lorong.core.metrics import METRICS
from lorong.core.model import RawReading
from lorong.core.units import normalize_unit

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
    "luminosity": ("illuminance", "lx"),
    "illuminance": ("illuminance", "lx"),
    "rssi": ("rssi", "dBm"),
}
for _spec in METRICS.values():  # canonical names in their canonical units
    KEYS.setdefault(_spec.name.lower(), (_spec.name, _spec.unit))

_FLAGS: dict[str, tuple[str, dict[str, float]]] = {
    "tilt": ("tilt", {"tilt": 1.0, "normal": 0.0, "true": 1.0, "false": 0.0}),
    "position": ("tilt", {"tilt": 1.0, "normal": 0.0}),
}

_SUFFIX = re.compile(r"^(.*)_(\d{1,3})$")

SENTINEL_STRINGS: frozenset[str] = frozenset({"no sensor", "invalid reading"})
"""Vendor words for "the sensor gave no value", lower case (matched ignoring case and surrounding
blanks): Dragino's ``"No Sensor"`` (TheThingsNetwork/lorawan-devices
``vendor/dragino/ldds75-codec.yaml``, ``{'distance': 'No Sensor'}``) and ``"Invalid Reading"``
(Dragino; sensor.community airrohr firmware sends it for a failed BME280 read)."""


def as_float(value: Any) -> float | None:
    """A JSON number or a numeric string (leading number of ``"2799 mm"``) as float, else ``None``.

    ``true``/``false`` are not numbers. Integers too large for a float become ``inf``, so that
    validation rejects them as ``non_finite`` rather than the caller crashing.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        head = value.strip().split(" ")[0]
        try:
            return float(head)
        except ValueError:
            return None
    return None


def lookup(key: str) -> tuple[str, str, int] | None:
    """``(metric, vendor unit, channel)`` of a decoded-object key, or ``None`` when unknown.

    ``channel`` is -1 for a key without CayenneLPP suffix. Flag keys (``tilt``, ``position``)
    are not numeric and are handled by :func:`readings_from_object` only.
    """
    k = key.lower()
    if k in KEYS:
        metric, unit = KEYS[k]
        return metric, unit, -1
    m = _SUFFIX.match(k)
    if m and m.group(1) in KEYS:
        metric, unit = KEYS[m.group(1)]
        return metric, unit, int(m.group(2))
    return None


def _value_and_unit(raw: Any, unit: str) -> tuple[float, str, str | None]:
    """Number and unit of a vendor value, and the text of a string that is neither a number nor
    in :data:`SENTINEL_STRINGS` (else ``None``); non-numeric values of a known key become ``nan``.

    Decentlab objects carry their own unit (``{"value": 96000, "unit": "Pa"}``), which wins over
    the table's unit.
    """
    if isinstance(raw, dict):
        own = raw.get("unit")
        if isinstance(own, str) and own.strip():
            unit = normalize_unit(own)
        raw = raw.get("value")
    value = as_float(raw)
    if value is not None:
        return value, unit, None
    bad = raw if isinstance(raw, str) and raw.strip().lower() not in SENTINEL_STRINGS else None
    return math.nan, unit, bad


def readings_from_object(obj: dict[str, Any]) -> list[RawReading]:
    """Canonical raw readings from a decoded object; unknown keys are skipped.

    Values may be numbers, numeric strings (``"2799 mm"``) or Decentlab ``{"value": x, "unit": u}``
    objects. A sentinel string for a known key (:data:`SENTINEL_STRINGS`, ``"No Sensor"``) yields
    a reading with ``nan`` so that validation rejects the message as ``sensor_sentinel`` instead
    of silently dropping it; other non-string, non-numeric values (``null``, ``true``, lists) do
    the same.

    Returns:
        one :class:`RawReading` per metric (see the module docstring for which key wins), in
        vendor units, in the order of the winning keys; :func:`lorong.core.units.convert` brings them to
        canonical units during validation.

    Raises:
        ParseError: ``bad_value`` when the winning key of a metric holds any other string that
            is not a number (``{"distance": "lots"}``); a losing key's value is dropped unread.
    """
    best: dict[str, tuple[int, int, RawReading]] = {}
    bad: dict[str, tuple[int, str, str]] = {}  # metric -> (order, key, text) of a winning bad string
    for order, (key, raw) in enumerate(obj.items()):
        k = key.lower()
        if k in _FLAGS:
            metric, mapping = _FLAGS[k]
            if isinstance(raw, bool | int | float):
                flag: float | None = float(bool(raw))
            else:
                flag = mapping.get(str(raw).lower()) if isinstance(raw, str) else None
            if flag is not None and metric not in best:
                best[metric] = (-1, order, RawReading(metric, flag, "1"))
            continue
        found = lookup(key)
        if found is None:
            continue
        metric, unit, channel = found
        value, unit, text = _value_and_unit(raw, unit)
        if metric not in best or (channel, order) < best[metric][:2]:
            best[metric] = (channel, order, RawReading(metric, value, unit))
            if text is None:
                bad.pop(metric, None)
            else:
                bad[metric] = (order, key, text)
    if bad:
        _, key, text = min(bad.values())  # the first in the object
        raise ParseError("bad_value", f"decoded {key!r:.80} = {text!r:.80} is not a number "
                                      f"(nor a sensor's no-value word such as 'No Sensor')")
    return [r for _, _, r in sorted(best.values(), key=lambda item: item[1])]
