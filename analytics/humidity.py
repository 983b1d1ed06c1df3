"""Humidity correction and quality checks for low-cost optical PM sensors.

Optical sensors count wet particles: at high relative humidity hygroscopic aerosol takes up water,
grows and is reported as extra dry mass. Two published corrections, chosen per sensor model:

* **kappa-Koehler** (Crilley et al. 2018, "Evaluation of a low-cost optical particle counter
  (Alphasense OPC-N2) for ambient air monitoring", Atmos. Meas. Tech. 11, 709-720,
  doi:10.5194/amt-11-709-2018): ``C = 1 + (kappa / 1.65) / (-1 + 1 / a_w)``, ``PM_dry = PM / C``,
  with the water activity ``a_w`` taken as RH (fraction) and 1.65 the assumed particle density
  (g/cm3). ``kappa`` is the bulk hygroscopicity of the local aerosol; it depends on composition
  (sulfate, nitrate: Crilley et al. 2020, AMT 13, 1181) and is best fitted against a reference
  monitor. Until a deployment fits its own (settings ``pm_kappa_by_model``), the optical sensors
  here use :data:`DEFAULT_KAPPA`, each station's adjusted against the network's median by
  :mod:`analytics.kappa_fit`.
* **US EPA PurpleAir correction** (Barkjohn, Gantt and Clements 2021, "Development and application
  of a United States-wide correction for PM2.5 data collected with the PurpleAir sensor", Atmos.
  Meas. Tech. 14, 4617-4637, doi:10.5194/amt-14-4617-2021):
  ``PM2.5 = 0.524 * PA_cf1 - 0.0862 * RH% + 5.75`` (ug/m3), PA_cf1 = mean of the A and B channels'
  cf_1 PM2.5, fitted on 24 h averages.

Quality checks: clipped/sentinel and out-of-range readings (datasheet ceilings) and the PurpleAir
A/B channel agreement rule of Barkjohn et al. 2021 section 3.2.3 (as coded in US EPA's
sensortoolkit, ``sensortoolkit/qc/_purpleair_abcleaning.py``).

Units: concentrations in ug/m3; relative humidity as a fraction 0..1, the canonical unit of
``relativeHumidity`` in :mod:`lorong.core.metrics` (Barkjohn's formula wants percent: converted inside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

PARTICLE_DENSITY_G_CM3 = 1.65
"""Density assumed by the Crilley et al. 2018 correction factor."""

DEFAULT_KAPPA = 0.3
"""Bulk hygroscopicity used when a deployment has fitted none: 0.3 is the value Andreae and
Rosenfeld (2008, "Aerosol-cloud-precipitation interactions. Part 1", Earth-Sci. Rev. 89:13-41)
give for continental aerosol (Pringle et al. 2010, ACP 10:5241, find a continental mean of 0.27).
Uncorrected, an optical sensor at 90 % RH reads about 3.2 times the dry mass with this kappa."""

DEFAULT_RH_MAX = 0.95
"""Highest RH (fraction) at which :func:`kappa_correct` answers by default. Our choice, not the
paper's: the factor grows without bound as RH -> 1 and in fog droplets are counted as particles,
so near saturation the corrected value says little; the caller drops such readings instead."""


class Correction(StrEnum):
    """Humidity correction applied to a sensor model's PM readings."""

    NONE = "none"
    KAPPA_KOEHLER = "kappa_koehler"  # Crilley et al. 2018, needs kappa
    EPA_BARKJOHN_2021 = "epa_barkjohn_2021"  # PurpleAir PM2.5 (cf_1, A/B mean)


class PmFlag(StrEnum):
    """Verdict of :func:`check_pm_ceiling`.

    ``SENTINEL`` and ``ABOVE_RANGE`` mean drop the reading; ``ABOVE_EFFECTIVE`` means keep it with
    a flag (outside the accuracy specification, inside the measuring range).
    """

    OK = "ok"
    SENTINEL = "sentinel"
    ABOVE_RANGE = "above_range"
    ABOVE_EFFECTIVE = "above_effective_range"


@dataclass(frozen=True, slots=True)
class PmSensorModel:
    """Configuration of one PM sensor model.

    Attributes:
        name: registry key (``"sds011"``).
        range_max_ugm3: top of the datasheet measuring range, ug/m3; higher readings are rejected.
        effective_max_ugm3: top of the range the accuracy is specified for, ug/m3.
        sentinels: ``(metric, value)`` pairs the sensor emits when its output is clipped at the top
            code (saturation, fan or optics failure): such a reading carries no information.
        correction: humidity correction for this model.
        kappa: bulk hygroscopicity for :attr:`Correction.KAPPA_KOEHLER` (site-specific, fitted).
        rh_max: highest RH fraction at which the kappa correction is applied.
        reference: a regulatory-grade monitor that measures dry PM (a heated or dried inlet, an
            equivalence designation): its readings need no humidity correction and are the dry
            reference the network's kappas are fitted against (:mod:`analytics.kappa_fit`).
    """

    name: str
    range_max_ugm3: float
    effective_max_ugm3: float
    sentinels: frozenset[tuple[str, float]] = frozenset()
    correction: Correction = Correction.NONE
    kappa: float | None = None
    rh_max: float = DEFAULT_RH_MAX
    reference: bool = False


SENSOR_MODELS: dict[str, PmSensorModel] = {
    m.name: m
    for m in (
        # Nova Fitness SDS011 datasheet V1.3: range 0.0-999.9 ug/m3. The output clips at 999.9
        # (PM2.5) and 1999.9 (PM10); a Sensor.Community archive day (sensor 15462, 2019-03-06)
        # has PM10 up to 1999.90.
        # Optical sensors without a heated inlet count wet particles: kappa-Koehler with
        # DEFAULT_KAPPA unless the deployment fits its own.
        PmSensorModel("sds011", 999.9, 999.9, frozenset({("pm25", 999.9), ("pm10", 1999.9)}),
                      Correction.KAPPA_KOEHLER, DEFAULT_KAPPA),
        # Plantower PMS5003 data manual (2016): effective range 0-500 ug/m3, maximum range
        # >= 1000 ug/m3 (the guaranteed part, 1000, is the ceiling here).
        PmSensorModel("pms5003", 1000.0, 500.0, correction=Correction.KAPPA_KOEHLER, kappa=DEFAULT_KAPPA),
        # Sensirion SPS30 datasheet: mass concentration range 0-1000 ug/m3.
        PmSensorModel("sps30", 1000.0, 1000.0, correction=Correction.KAPPA_KOEHLER, kappa=DEFAULT_KAPPA),
        # PurpleAir PA-II: two PMS5003 (channels A and B); EPA correction of Barkjohn et al. 2021.
        PmSensorModel("purpleair_pa2", 1000.0, 500.0, correction=Correction.EPA_BARKJOHN_2021),
        # Teledyne API T640 PM mass monitor: a US EPA Federal Equivalent Method for PM2.5 (US EPA,
        # "Standard Operating Procedure, Teledyne Model 640 Real-Time Continuous PM Monitor", 2019),
        # range 0-10,000 ug/m3 (Teledyne API T640 specifications). Its aerosol drying system (IADS)
        # heats the sample, so it reads dry PM: no correction, and a reference for the low-cost
        # stations around it (the kind of monitor a KLHK ISPU station runs).
        PmSensorModel("t640", 10000.0, 10000.0, reference=True),
    )
}
"""Known PM sensor models. Configure a deployment with ``dataclasses.replace(model, ...)``."""


def get_sensor_model(name: str) -> PmSensorModel:
    """Return the registered model ``name``.

    Raises:
        ValueError: unknown model (the message lists the known ones).
    """
    try:
        return SENSOR_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown PM sensor model {name!r}; known: {', '.join(SENSOR_MODELS)}") from None


def _finite(name: str, value: float, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return float(value)


def _rh(rh_fraction: float) -> float:
    rh = _finite("rh_fraction", rh_fraction)
    if rh > 1.0:
        raise ValueError(f"rh_fraction is a fraction 0..1, got {rh} (percent given?)")
    return rh


def kappa_growth_factor(rh_fraction: float, kappa: float) -> float:
    """Mass growth factor C of Crilley et al. 2018: ``1 + (kappa / 1.65) / (-1 + 1 / a_w)``.

    Args:
        rh_fraction: relative humidity as water activity a_w, 0 <= RH < 1.
        kappa: bulk hygroscopicity, >= 0.

    Returns:
        C >= 1 (1 at RH 0 or kappa 0).

    Raises:
        ValueError: RH outside [0, 1) or NaN, negative or NaN kappa.
    """
    rh = _rh(rh_fraction)
    k = _finite("kappa", kappa)
    if rh >= 1.0:
        raise ValueError("the kappa-Koehler factor is undefined at RH = 1 (saturation)")
    if rh == 0.0:
        return 1.0
    return 1.0 + (k / PARTICLE_DENSITY_G_CM3) / (-1.0 + 1.0 / rh)


def kappa_correct(pm_ugm3: float, rh_fraction: float, kappa: float, *,
                  rh_max: float = DEFAULT_RH_MAX) -> float:
    """Dry PM mass: ``pm_ugm3 / C`` with C from :func:`kappa_growth_factor` (Crilley et al. 2018).

    Args:
        pm_ugm3: PM reading of the optical sensor, ug/m3, >= 0.
        rh_fraction: relative humidity at the sensor, fraction 0..1.
        kappa: bulk hygroscopicity of the local aerosol, >= 0.
        rh_max: refuse above this RH (see :data:`DEFAULT_RH_MAX`).

    Returns:
        Corrected PM, ug/m3.

    Raises:
        ValueError: negative/NaN PM, RH outside [0, 1], RH > ``rh_max``, bad kappa.
    """
    pm = _finite("pm_ugm3", pm_ugm3)
    rh = _rh(rh_fraction)
    if rh > rh_max:
        raise ValueError(f"RH {rh:.2f} above rh_max {rh_max:.2f}: hygroscopic correction not applied")
    return pm / kappa_growth_factor(rh, kappa)


def barkjohn_2021(pa_cf1_ugm3: float, rh_fraction: float) -> float:
    """US EPA PurpleAir PM2.5 correction: ``0.524 * PA_cf1 - 0.0862 * RH% + 5.75`` (Barkjohn 2021).

    Args:
        pa_cf1_ugm3: PurpleAir PM2.5 cf_1, mean of channels A and B, ug/m3 (see
            :func:`check_ab_channels`); the fit used 24 h averages.
        rh_fraction: PurpleAir relative humidity, fraction 0..1 (x100 for the formula).

    Returns:
        Corrected PM2.5, ug/m3. The line goes below zero for clean, humid air (PA 0, RH 90 %:
        -2.0); a negative mass is not physical, so the result is floored at 0.0 (our choice).

    Raises:
        ValueError: negative/NaN PM or RH outside [0, 1].
    """
    pa = _finite("pa_cf1_ugm3", pa_cf1_ugm3)
    rh_pct = _rh(rh_fraction) * 100.0
    return max(0.0, 0.524 * pa - 0.0862 * rh_pct + 5.75)


def correct_pm(model: PmSensorModel, pm_ugm3: float, rh_fraction: float) -> float:
    """Apply ``model``'s configured humidity correction to one reading.

    Args:
        model: sensor model configuration.
        pm_ugm3: PM reading, ug/m3 (PurpleAir: the A/B mean of cf_1 PM2.5).
        rh_fraction: relative humidity, fraction 0..1.

    Returns:
        Corrected PM, ug/m3 (``pm_ugm3`` unchanged for :attr:`Correction.NONE`).

    Raises:
        ValueError: bad inputs, RH above ``model.rh_max`` for kappa, or a kappa model without kappa.
    """
    if model.correction is Correction.NONE:
        _rh(rh_fraction)
        return _finite("pm_ugm3", pm_ugm3)
    if model.correction is Correction.EPA_BARKJOHN_2021:
        return barkjohn_2021(pm_ugm3, rh_fraction)
    if model.kappa is None:
        raise ValueError(f"model {model.name!r} uses kappa_koehler but has no kappa configured")
    return kappa_correct(pm_ugm3, rh_fraction, model.kappa, rh_max=model.rh_max)


def check_pm_ceiling(model: PmSensorModel, metric: str, value_ugm3: float) -> PmFlag:
    """Classify a reading against the model's sentinels and datasheet ceilings.

    Args:
        model: sensor model.
        metric: canonical metric name (``"pm25"``, ``"pm10"``, ``"pm1"``).
        value_ugm3: the reading, ug/m3 (as reported: an exact sentinel is compared at 0.01).

    Returns:
        SENTINEL when the value equals one of the model's clip values for ``metric``;
        ABOVE_RANGE above ``range_max_ugm3``; ABOVE_EFFECTIVE above ``effective_max_ugm3``; else OK.

    Raises:
        ValueError: negative or NaN value.
    """
    v = _finite("value_ugm3", value_ugm3)
    if any(m == metric and abs(v - s) < 0.005 for m, s in model.sentinels):
        return PmFlag.SENTINEL
    if v > model.range_max_ugm3:
        return PmFlag.ABOVE_RANGE
    if v > model.effective_max_ugm3:
        return PmFlag.ABOVE_EFFECTIVE
    return PmFlag.OK


@dataclass(frozen=True, slots=True)
class AbCheck:
    """Agreement of PurpleAir channels A and B.

    Attributes:
        mean_ugm3: (A + B) / 2, ug/m3.
        abs_diff_ugm3: |A - B|, ug/m3.
        rel_diff: |A - B| / mean = 2|A - B| / (A + B); 0.0 when both are 0.
        rejected: True when both thresholds are exceeded: drop the pair.
    """

    mean_ugm3: float
    abs_diff_ugm3: float
    rel_diff: float
    rejected: bool


def check_ab_channels(a_ugm3: float, b_ugm3: float, *, max_abs_diff_ugm3: float = 5.0,
                      max_rel_diff: float = 0.70) -> AbCheck:
    """PurpleAir A/B rule (Barkjohn et al. 2021 section 3.2.3): reject when |A - B| > 5 ug/m3
    **and** the relative difference 2|A - B| / (A + B) > 70 %.

    Both conditions are needed: at low concentration a large relative difference is noise (A 1,
    B 3: 100 % but 2 ug/m3), at high concentration a large absolute one is within spec (A 200,
    B 220: 20 ug/m3 but 9.5 %).

    Args:
        a_ugm3: channel A PM2.5, ug/m3, >= 0.
        b_ugm3: channel B PM2.5, ug/m3, >= 0.
        max_abs_diff_ugm3: absolute threshold, ug/m3.
        max_rel_diff: relative threshold, fraction.

    Returns:
        The check; use ``mean_ugm3`` only when not ``rejected``.

    Raises:
        ValueError: negative or NaN channel value.
    """
    a = _finite("a_ugm3", a_ugm3)
    b = _finite("b_ugm3", b_ugm3)
    diff = abs(a - b)
    rel = 0.0 if a + b == 0 else 2.0 * diff / (a + b)
    return AbCheck((a + b) / 2.0, diff, rel, diff > max_abs_diff_ugm3 and rel > max_rel_diff)


def purpleair_pm25(a_cf1_ugm3: float, b_cf1_ugm3: float, rh_fraction: float) -> float | None:
    """Cleaned and corrected PurpleAir PM2.5: A/B check, then :func:`barkjohn_2021` of the mean.

    Args:
        a_cf1_ugm3: channel A cf_1 PM2.5, ug/m3.
        b_cf1_ugm3: channel B cf_1 PM2.5, ug/m3.
        rh_fraction: relative humidity, fraction 0..1.

    Returns:
        Corrected PM2.5 in ug/m3, or None when the channels disagree.

    Raises:
        ValueError: negative/NaN inputs, RH outside [0, 1].
    """
    ab = check_ab_channels(a_cf1_ugm3, b_cf1_ugm3)
    rh = _rh(rh_fraction)
    return None if ab.rejected else barkjohn_2021(ab.mean_ugm3, rh)
