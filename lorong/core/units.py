"""Unit conversion into each metric's canonical unit (:mod:`lorong.core.metrics`).

Only linear conversions that sensors actually report are supported; the factors are exact
SI definitions (BIPM SI Brochure, 9th ed.).
"""

from __future__ import annotations

from functools import lru_cache

from lorong.core.errors import ValidationError

_ALIASES = {
    "°C": "degC", "C": "degC", "celsius": "degC", "%RH": "%", "percent": "%", "ug/m³": "ug/m3",
    "µg/m3": "ug/m3", "µg/m³": "ug/m3", "mg/m³": "mg/m3", "": "1", "ratio": "1", "fraction": "1",
    "/": "1",
}

# (from, to) -> (scale, offset): canonical = value * scale + offset
_FACTORS: dict[tuple[str, str], tuple[float, float]] = {
    ("cm", "mm"): (10.0, 0.0),
    ("m", "mm"): (1000.0, 0.0),
    ("%", "1"): (0.01, 0.0),
    ("Pa", "hPa"): (0.01, 0.0),
    ("kPa", "hPa"): (10.0, 0.0),
    ("mbar", "hPa"): (1.0, 0.0),
    ("mV", "V"): (0.001, 0.0),
    ("K", "degC"): (1.0, -273.15),
    ("degF", "degC"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("mg/m3", "ug/m3"): (1000.0, 0.0),
    ("ug/m3", "mg/m3"): (0.001, 0.0),
}


def normalize_unit(unit: str) -> str:
    """Map spellings such as ``°C`` or ``µg/m³`` onto Lorong's ASCII unit symbols."""
    return _ALIASES.get(unit.strip(), unit.strip())


@lru_cache(maxsize=1024)
def factor(unit: str, to: str) -> tuple[float, float] | None:
    """``(scale, offset)`` such that ``value_in_to = value * scale + offset``; ``None`` when
    ``unit`` and ``to`` are the same unit. Cached: validation asks for every reading.

    Raises:
        ValidationError: reason ``bad_unit`` when no conversion is known.
    """
    src, dst = normalize_unit(unit), normalize_unit(to)
    if src == dst:
        return None
    try:
        return _FACTORS[(src, dst)]
    except KeyError:
        raise ValidationError("bad_unit", f"cannot convert {unit!r} to {to!r}") from None


def convert(value: float, unit: str, to: str) -> float:
    """Convert ``value`` from ``unit`` to ``to``.

    Raises:
        ValidationError: reason ``bad_unit`` when no conversion is known.
    """
    if unit == to:
        return value
    f = factor(unit, to)
    return value if f is None else value * f[0] + f[1]
