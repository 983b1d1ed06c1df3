"""Air-quality indices: Indonesia's ISPU and the US EPA AQI, per pollutant and overall.

Two standards, both piecewise-linear maps from a concentration to an index:

* **ISPU** (Indeks Standar Pencemar Udara), Peraturan Menteri LHK
  No. P.14/MENLHK/SETJEN/KUM.1/7/2020, Lampiran: seven parameters (PM10, PM2.5, SO2, CO, O3, NO2,
  HC), each with five upper limits in ug/m3 at ISPU 50/100/200/300/500. The regulation's formula is
  ``I = (Ia - Ib) / (Xa - Xb) * (Xx - Xb) + Ib`` with Ia/Ib the upper/lower ISPU of the band and
  Xa/Xb its upper/lower concentration. The table lists only upper limits, so a band's lower
  limits are the previous band's upper limits (0 for the first band): the map is continuous.
* **US AQI**, 40 CFR Part 58 Appendix G as revised in 2024 (89 FR 16202) and the EPA Technical
  Assistance Document EPA-454/B-24-002 (May 2024): PM2.5 and PM10 only here. EPA truncates the
  concentration (PM2.5 to 0.1 ug/m3, PM10 to 1 ug/m3), interpolates inside the band that holds
  it and rounds the index to the nearest integer (AirNow "The AQI Equation (2024)").

Averaging periods (:data:`AVERAGING_H`): the P.14/2020 conversion table heads every column
"24 jam" (24-hour average of continuous measurement), O3 and CO included; the 1997 rules it
replaced (KEP-107/KABAPEDAL/11/1997) used CO 8 h and O3/NO2 1 h. Source for the 2020 table: the
regulation's Lampiran as reproduced in secondary Indonesian sources (the gazette PDF itself was not
at hand; the breakpoint values agree with the issue's table). EPA: 24 h for PM2.5 and PM10. Hourly
"NowCast" values are not computed here; the caller passes the average over the stated window.

Rounding. EPA: round half up after truncation (the TAD). ISPU: the regulation's bands are integer
ranges (0-50, 51-100, 101-200, 201-300, >300) and it states no rounding rule, so the integer
``index`` is the *ceiling* of the exact value (to 1e-6): the only rounding that keeps a concentration above
a band's upper limit out of that band (PM10 50.1 ug/m3 -> 50.05 -> 51, Sedang). ``value`` keeps
the unrounded number.

Above the last band: both standards stop at 500 (ISPU ">300" band ends at the 500 limits; EPA
calls values above 500 "Beyond the AQI"). We extrapolate the last band's line, set
``beyond_scale=True`` and keep the top category (Berbahaya / Hazardous), so a haze episode at
PM10 1000 ug/m3 reads ISPU 1000 instead of a flat 500 that hides how far off the scale it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from enum import StrEnum


class Standard(StrEnum):
    """Which index: ``ispu`` (Permen LHK P.14/2020) or ``us`` (US EPA AQI, 2024 breakpoints)."""

    ISPU = "ispu"
    US = "us"


@dataclass(frozen=True, slots=True)
class Category:
    """One named index category.

    Attributes:
        key: machine name (``"tidak_sehat"``).
        name_id: Bahasa Indonesia name (ISPU names are the regulation's; EPA names are our
            translation).
        name_en: English name (EPA names are EPA's).
        index_low: lowest integer index in the category.
        index_high: highest integer index, ``None`` for the open-ended top category.
    """

    key: str
    name_id: str
    name_en: str
    index_low: int
    index_high: int | None


@dataclass(frozen=True, slots=True)
class Band:
    """One row of a breakpoint table.

    Attributes:
        index_low: lowest integer index of the band as published (0, 51, 101 ...).
        index_high: highest integer index of the band (50, 100, ... 500).
        conc_low_ugm3: concentration at the band's lower end, ug/m3 (ISPU: the previous band's
            upper limit; EPA: the published low breakpoint).
        conc_high_ugm3: concentration upper limit of the band, ug/m3, inclusive.
        category: the category the band belongs to.
    """

    index_low: int
    index_high: int
    conc_low_ugm3: float
    conc_high_ugm3: float
    category: Category


@dataclass(frozen=True, slots=True)
class SubIndex:
    """The index of one pollutant.

    Attributes:
        standard: which standard computed it.
        pollutant: pollutant key (``"pm25"``, ``"pm10"``, ``"so2"``, ``"co"``, ``"o3"``, ``"no2"``,
            ``"hc"``).
        concentration_ugm3: the input, ug/m3, averaged over ``averaging_h`` hours.
        used_ugm3: the concentration the formula used (EPA: truncated; ISPU: the input).
        value: unrounded index from the linear formula.
        index: reported integer index (ISPU: ceiling of ``value``; EPA: rounded half up).
        band: the band used (the last band when ``beyond_scale``).
        category: category of ``index``.
        beyond_scale: True when the concentration is above the table's last limit and ``value``
            was extrapolated along the last band's line.
        averaging_h: averaging period the standard assumes, hours.
    """

    standard: Standard
    pollutant: str
    concentration_ugm3: float
    used_ugm3: float
    value: float
    index: int
    band: Band
    category: Category
    beyond_scale: bool
    averaging_h: int


@dataclass(frozen=True, slots=True)
class Report:
    """The overall index of a set of pollutants.

    Attributes:
        standard: which standard.
        index: the highest sub-index.
        critical: pollutants whose sub-index equals ``index`` (several on a tie), in the order of
            the standard's pollutant table.
        category: category of ``index``.
        sub_indices: one entry per input pollutant, in table order.
    """

    standard: Standard
    index: int
    critical: tuple[str, ...]
    category: Category
    sub_indices: tuple[SubIndex, ...]


ISPU_CATEGORIES = (
    Category("baik", "Baik", "Good", 0, 50),
    Category("sedang", "Sedang", "Moderate", 51, 100),
    Category("tidak_sehat", "Tidak Sehat", "Unhealthy", 101, 200),
    Category("sangat_tidak_sehat", "Sangat Tidak Sehat", "Very Unhealthy", 201, 300),
    Category("berbahaya", "Berbahaya", "Hazardous", 301, None),
)
"""ISPU categories, P.14/2020 (names as the regulation prints them; English labels ours)."""

US_CATEGORIES = (
    Category("good", "Baik", "Good", 0, 50),
    Category("moderate", "Sedang", "Moderate", 51, 100),
    Category("usg", "Tidak Sehat bagi Kelompok Sensitif", "Unhealthy for Sensitive Groups", 101, 150),
    Category("unhealthy", "Tidak Sehat", "Unhealthy", 151, 200),
    Category("very_unhealthy", "Sangat Tidak Sehat", "Very Unhealthy", 201, 300),
    Category("hazardous", "Berbahaya", "Hazardous", 301, None),
)
"""US AQI categories, 40 CFR 58 App. G Table 1 (Bahasa names: our translation)."""

_ISPU_BREAKPOINTS = (0, 50, 100, 200, 300, 500)
_ISPU_LIMITS: dict[str, tuple[float, ...]] = {  # upper limits, ug/m3, at ISPU 50/100/200/300/500
    "pm10": (50, 150, 350, 420, 500),
    "pm25": (15.5, 55.4, 150.4, 250.4, 500),
    "so2": (52, 180, 400, 800, 1200),
    "co": (4000, 8000, 15000, 30000, 45000),
    "o3": (120, 235, 400, 800, 1000),
    "no2": (80, 200, 1130, 2260, 3000),
    "hc": (45, 100, 215, 432, 648),
}

_US_INDEX = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))
_US_CONC: dict[str, tuple[tuple[float, float], ...]] = {  # ug/m3, 2024 table
    "pm25": ((0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4), (225.5, 325.4)),
    "pm10": ((0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)),
}
_US_TRUNCATE = {"pm25": Decimal("0.1"), "pm10": Decimal("1")}


def _ispu_bands(limits: tuple[float, ...]) -> tuple[Band, ...]:
    lows = (0.0, *limits[:-1])
    return tuple(
        Band(0 if i == 0 else _ISPU_BREAKPOINTS[i] + 1, _ISPU_BREAKPOINTS[i + 1], float(lo), float(hi),
             ISPU_CATEGORIES[i])
        for i, (lo, hi) in enumerate(zip(lows, limits, strict=True))
    )


ISPU_BANDS: dict[str, tuple[Band, ...]] = {p: _ispu_bands(lim) for p, lim in _ISPU_LIMITS.items()}
"""ISPU bands per pollutant, P.14/2020 Lampiran."""

US_BANDS: dict[str, tuple[Band, ...]] = {
    p: tuple(Band(ilo, ihi, float(clo), float(chi), cat)
             for (ilo, ihi), (clo, chi), cat in zip(_US_INDEX, conc, US_CATEGORIES, strict=True))
    for p, conc in _US_CONC.items()
}
"""US AQI bands per pollutant, EPA 2024 breakpoints."""

AVERAGING_H: dict[Standard, dict[str, int]] = {
    Standard.ISPU: dict.fromkeys(_ISPU_LIMITS, 24),
    Standard.US: {"pm25": 24, "pm10": 24},
}
"""Averaging period in hours each standard assumes, per pollutant (see module docstring)."""


MAX_CONCENTRATION_UGM3 = 1e9
"""Largest concentration an index is computed for: 1e9 ug/m3 is 1 kg/m3, about the density of air
itself (1.2 kg/m3 at sea level and 20 degC, ISO 2533 standard atmosphere), so no pollutant in air
comes near it; a larger value is a unit or typing mistake (1e308 overflowed the index)."""


def _check_concentration(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"concentration must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"concentration must be finite, got {value}")
    if value < 0:
        raise ValueError(f"concentration must be >= 0 ug/m3, got {value}")
    if value > MAX_CONCENTRATION_UGM3:
        raise ValueError(f"concentration must be <= {MAX_CONCENTRATION_UGM3:g} ug/m3 (1 kg/m3, about the "
                         f"density of air itself), got {value:g}")
    return float(value)


def _bands(standard: Standard, pollutant: str) -> tuple[Band, ...]:
    table = ISPU_BANDS if standard is Standard.ISPU else US_BANDS
    try:
        return table[pollutant]
    except KeyError:
        raise ValueError(
            f"unknown pollutant {pollutant!r} for {standard.value}; known: {', '.join(table)}"
        ) from None


def _category(categories: tuple[Category, ...], index: float) -> Category:
    if isinstance(index, bool) or not isinstance(index, int | float) or math.isnan(index):
        raise ValueError(f"index must be a number, got {index!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    for cat in categories[:-1]:
        assert cat.index_high is not None
        if index <= cat.index_high:
            return cat
    return categories[-1]


def ispu_category(index: float) -> Category:
    """Category of an ISPU value: <=50 Baik, <=100 Sedang, <=200 Tidak Sehat, <=300 Sangat Tidak
    Sehat, above Berbahaya (P.14/2020). A fractional index between two bands (50.4) belongs to the
    upper one, as its ceiling does.

    Raises:
        ValueError: negative or NaN index.
    """
    return _category(ISPU_CATEGORIES, index)


def us_aqi_category(index: float) -> Category:
    """Category of a US AQI value (40 CFR 58 App. G Table 1; 301 and above: Hazardous).

    Raises:
        ValueError: negative or NaN index.
    """
    return _category(US_CATEGORIES, index)


def _interpolate(bands: tuple[Band, ...], conc: float, continuous: bool) -> tuple[float, Band, bool]:
    for i, band in enumerate(bands):
        if conc <= band.conc_high_ugm3:
            lo_index = bands[i - 1].index_high if continuous and i > 0 else band.index_low
            break
    else:
        band, i = bands[-1], len(bands) - 1
        lo_index = bands[i - 1].index_high if continuous else band.index_low
    span = band.conc_high_ugm3 - band.conc_low_ugm3
    value = lo_index + (band.index_high - lo_index) * (conc - band.conc_low_ugm3) / span
    return value, band, conc > bands[-1].conc_high_ugm3


def ispu_sub_index(pollutant: str, concentration_ugm3: float) -> SubIndex:
    """ISPU of one pollutant (Permen LHK P.14/2020, linear interpolation inside its band).

    Args:
        pollutant: ``pm10``, ``pm25``, ``so2``, ``co``, ``o3``, ``no2`` or ``hc``.
        concentration_ugm3: 24-hour average concentration, ug/m3 (CO too: 4000 ug/m3 = ISPU 50).

    Returns:
        The sub-index; ``index`` is the ceiling of the exact ``value``. Above the last limit the
        last band's line is extrapolated and ``beyond_scale`` is set.

    Raises:
        ValueError: unknown pollutant, negative, NaN, infinite or impossible (> :data:`MAX_CONCENTRATION_UGM3`)
            concentration.
    """
    conc = _check_concentration(concentration_ugm3)
    bands = _bands(Standard.ISPU, pollutant)
    value, band, beyond = _interpolate(bands, conc, continuous=True)
    index = math.ceil(round(value, 6))  # 1e-6 guard: 60.000000000000004 is 60, not 61
    return SubIndex(Standard.ISPU, pollutant, conc, conc, value, index, band, ispu_category(index),
                    beyond, AVERAGING_H[Standard.ISPU][pollutant])


def us_aqi_sub_index(pollutant: str, concentration_ugm3: float) -> SubIndex:
    """US AQI of PM2.5 or PM10 with the 2024 breakpoints (EPA-454/B-24-002).

    The concentration is first truncated (PM2.5 to 0.1 ug/m3, PM10 to 1 ug/m3), then
    ``I = (Ihi - Ilo) / (BPhi - BPlo) * (C - BPlo) + Ilo`` inside the band holding C, rounded half up.

    Args:
        pollutant: ``pm25`` or ``pm10``.
        concentration_ugm3: 24-hour average, ug/m3.

    Returns:
        The sub-index. Above the last breakpoint (PM2.5 325.4, PM10 604) the 301-500 line is
        extrapolated ("Beyond the AQI") and ``beyond_scale`` is set.

    Raises:
        ValueError: unknown pollutant, negative, NaN, infinite or impossible (> :data:`MAX_CONCENTRATION_UGM3`)
            concentration.
    """
    conc = _check_concentration(concentration_ugm3)
    bands = _bands(Standard.US, pollutant)
    used = float(Decimal(repr(conc)).quantize(_US_TRUNCATE[pollutant], rounding=ROUND_DOWN))
    value, band, beyond = _interpolate(bands, used, continuous=False)
    index = int(Decimal(repr(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
    return SubIndex(Standard.US, pollutant, conc, used, value, index, band, us_aqi_category(index),
                    beyond, AVERAGING_H[Standard.US][pollutant])


def sub_index(standard: str, pollutant: str, concentration_ugm3: float) -> SubIndex:
    """Sub-index for a standard named by string (``"ispu"`` or ``"us"``).

    Raises:
        ValueError: unknown standard or pollutant, bad concentration.
    """
    try:
        std = Standard(standard.lower())
    except ValueError:
        raise ValueError(
            f"unknown standard {standard!r}; known: {', '.join(s.value for s in Standard)}"
        ) from None
    fn = ispu_sub_index if std is Standard.ISPU else us_aqi_sub_index
    return fn(pollutant.lower(), concentration_ugm3)


def critical_pollutants(indices: Mapping[str, float]) -> tuple[str, ...]:
    """Pollutants whose sub-index is the maximum ("parameter pencemar kritis"), ties kept.

    Args:
        indices: pollutant key -> sub-index (any standard), at least one entry.

    Returns:
        The keys holding the maximum, in the mapping's order.

    Raises:
        ValueError: empty mapping or a NaN / negative sub-index.
    """
    if not indices:
        raise ValueError("no sub-indices given")
    for key, idx in indices.items():
        if math.isnan(idx) or idx < 0:
            raise ValueError(f"sub-index of {key!r} must be >= 0, got {idx}")
    top = max(indices.values())
    return tuple(k for k, v in indices.items() if v == top)


def report(standard: str, concentrations_ugm3: Mapping[str, float]) -> Report:
    """Overall index: the highest sub-index, its critical pollutant(s) and category.

    Args:
        standard: ``"ispu"`` or ``"us"``.
        concentrations_ugm3: pollutant key -> concentration (ug/m3, the standard's averaging
            period); at least one entry.

    Returns:
        The report; ``critical`` lists every pollutant that shares the maximum (ties kept).

    Raises:
        ValueError: empty mapping, unknown standard or pollutant, bad concentration.
    """
    if not concentrations_ugm3:
        raise ValueError("no concentrations given")
    subs = [sub_index(standard, p, c) for p, c in concentrations_ugm3.items()]
    order = list(ISPU_BANDS if subs[0].standard is Standard.ISPU else US_BANDS)
    subs.sort(key=lambda s: order.index(s.pollutant))
    top = max(s.index for s in subs)
    critical = critical_pollutants({s.pollutant: s.index for s in subs})
    cat = ispu_category(top) if subs[0].standard is Standard.ISPU else us_aqi_category(top)
    return Report(subs[0].standard, top, critical, cat, tuple(subs))
