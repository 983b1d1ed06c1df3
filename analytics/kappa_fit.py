"""Each station's hygroscopic growth (kappa) fitted from the city's own data: node-to-node
calibration against the network.

A low-cost optical sensor reads ``dry PM2.5 x C(RH, kappa)`` (kappa-Koehler, Crilley et al. 2018,
AMT 11:709; :func:`analytics.humidity.kappa_growth_factor`). One configured kappa
(:data:`analytics.humidity.DEFAULT_KAPPA`, 0.3) corrects the network on average, but sensors and
sites differ (kappa 0.2 against 0.4 is 14 % at 60 % RH and 37 % at 90 % RH in C): at night a
station with a larger kappa reads over the ISPU band while the air is not.

Stations of one city breathe the same air mass: humidity and the daily rhythm of PM2.5 are much
the same everywhere, so the ratio of a station's reading to the median of the other stations'
dry (configured-kappa) PM2.5 in the same 10 minutes (:data:`FIT_BUCKET`) cancels the city's daily
cycle and weather and is ``a x C(RH, kappa_station) / C(RH, kappa_configured)``: a constant ``a``
(the site is dirtier or cleaner) times a humidity-dependent part whose shape gives the station's kappa. This is
node-to-node calibration (Kizel et al. 2018, "Node-to-node field calibration of wireless
distributed air pollution sensor network", Environ. Pollut. 233:900-909), with the network median
as the reference (Miskell et al. 2018, ACS Sens. 3:832-843, calibrate network sensors against a
proxy of their neighbours). For each candidate kappa the log ratio minus ``log C(RH, kappa)``
should be flat; the kappa whose residuals have the smallest trimmed spread (:data:`TRIM`: the
quarter of buckets farthest from the median left out, robust to a plume or a haze at a few
stations) is the station's.

Against the network alone, the network's median kappa stays the configured one: a city whose
aerosol is less (or more) hygroscopic than 0.3 is over- (or under-) corrected everywhere, most in
the humid morning (on simulated cities with sensor kappas 0.2-0.4, fitted kappas came out 0.01-0.07
too high on average). A reference monitor in the city (a sensor model with ``reference``, such as
the T640 of an ISPU station: it reads dry PM) removes that: where one reported in the bucket, the
reference is the reference monitors' median reading instead, and the station's ratio to it is
``a x C(RH, kappa_station)`` with nothing assumed (node-to-node calibration against a reference
node, Kizel et al. 2018). A station with too few hours beside a reference keeps the network fit.
A second pass fits each station against the median of the monitor and the other stations
calibrated by the first, each at the monitor's scale, so one monitor's own wander does not enter
every station's kappa (:func:`_against_consensus`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from analytics import humidity
from analytics.frames import PerLocalDay, window_points
from lorong.core import schema
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient

KAPPA_BOUNDS = (0.05, 1.0)
"""Smallest and largest kappa fitted: ambient aerosol lies between organics (kappa about 0.1) and
sulfate and sea salt (0.6-1.3), Petters and Kreidenweis 2007 (ACP 7:1961-1971); the bounds keep
a fit on bad data physical."""
KAPPA_STEP = 0.01
"""Grid step of the fit (a kappa 0.01 off changes C by under 2 % at 90 % RH)."""
MIN_HOURS = 18
"""Clock hours a station needs (with a reference, RH at most ``rh_max``) before its kappa is fitted:
three quarters of a day, so the humid night and the dry afternoon are both in even when a shower
(2-5 h over ``rh_max``, no corrected reading) took some hours of the first day; fewer keep the
configured kappa (our choice)."""
MIN_OTHERS = 3
"""Other stations with data in an hour needed for that hour's reference median (a median of one
or two is one station's site and sensor)."""
FIT_BUCKET = timedelta(minutes=10)
"""Buckets the live fit compares a station with its reference in (:func:`fitted_models`): two
readings of a station reporting every 5 minutes, a reading each of its neighbours; short enough that
the RH within one barely moves through the steep part of the growth curve (each reading is dried at
its own RH first, :func:`fit_kappas`)."""
MIN_RH_RANGE = 0.15
"""The station's hours must span this much RH (10th to 90th percentile, fraction): with a narrow
band of humidity kappa cannot be told from the site's scale. Over 0.70-0.85 RH the growth factor's
ratio between the two ends moves 3.5 % for a kappa 0.05 off (at kappa 0.3), against a noise of about
6 % per bucket averaged over more than a hundred buckets a day: measurable; a tropical day spans
about 0.55 to 0.95, a cloudy one 0.67 to 0.84 (the tuning city's seed 3, first day; our choice)."""
TRIM = 0.75
"""Share of a station's buckets the fit's spread is measured on: the 75 % nearest the median
residual (a least-trimmed-squares criterion, Rousseeuw 1984; h = 0.75 n is the usual choice when
under a quarter of the points are outliers, Rousseeuw and Van Driessen 2006, Data Min. Knowl.
Discov. 12:29-45). The buckets left out are a plume or a haze at the station or its reference;
the median absolute deviation used before (a 50 % breakdown point, about 37 % efficiency at
normal noise) threw away most of what the quiet buckets say."""


def growth(rh: np.ndarray, kappa: float | np.ndarray) -> np.ndarray:
    """:func:`analytics.humidity.kappa_growth_factor` on arrays (RH fraction in [0, 1))."""
    with np.errstate(divide="ignore"):
        out: np.ndarray = 1.0 + (np.asarray(kappa) / humidity.PARTICLE_DENSITY_G_CM3) / (1.0 / rh - 1.0)
    return out


def fit_kappas(readings: pd.DataFrame, models: dict[str, humidity.PmSensorModel],
               bucket: timedelta = timedelta(hours=1)) -> dict[str, float]:
    """Each kappa-corrected station's kappa (see the module docstring).

    Each reading is dried at its own RH for every candidate kappa, and the dry values are averaged
    per ``bucket`` (aligned to the epoch) before the ratio to the bucket's reference: the growth
    factor is convex in RH and steep near saturation, so the mean of an hour's readings is more than
    its mean dry mass grown at the hour's mean RH. With the RH scatter of humid nights (readings
    1-2 % apart around 94 %) a fit on hourly means put kappa 0.02-0.05 too high, and the whole
    network was over-corrected in the humid morning (:data:`FIT_BUCKET`).

    Args:
        readings: columns device_id, time (UTC), pm25 (ug/m3, as read), relativeHumidity (fraction);
            single readings or means (one row per hour is one reading per hourly bucket).
        models: device id -> sensor model; :attr:`~analytics.humidity.Correction.KAPPA_KOEHLER`
            models with a kappa are fitted (and are each other's network reference); ``reference``
            models (dry monitors) are the reference where they have data.
        bucket: the length of the buckets a station's readings are compared in (its reference's
            readings averaged over the same bucket).

    Returns:
        device id -> fitted kappa within :data:`KAPPA_BOUNDS`, for the stations with enough data
        (:data:`MIN_HOURS` clock hours with a bucket to compare, :data:`MIN_OTHERS`,
        :data:`MIN_RH_RANGE`); others are left out.
    """
    kap = {d: m for d, m in models.items() if m.correction is humidity.Correction.KAPPA_KOEHLER and m.kappa is not None}
    refs = [d for d, m in models.items() if m.reference and d not in kap]  # a kappa set for it: not dry
    if readings.empty or not kap or (not refs and len(kap) < MIN_OTHERS + 1):
        return {}
    frame = readings[readings["device_id"].isin(kap)]
    if frame.empty:  # another city's stations only (pandas 3 types an empty mapped column as text)
        return {}
    rh_max = frame["device_id"].map({d: m.rh_max for d, m in kap.items()}).astype(float)
    frame = frame[(frame["pm25"] > 0) & (frame["relativeHumidity"] > 0) & (frame["relativeHumidity"] <= rh_max)]
    if frame.empty:
        return {}
    every = pd.Timedelta(bucket)
    frame = frame.assign(time=frame["time"].dt.floor(every))
    k0 = frame["device_id"].map({d: m.kappa for d, m in kap.items()}).to_numpy(dtype=float)
    frame = frame.assign(dry=frame["pm25"].to_numpy() / growth(frame["relativeHumidity"].to_numpy(), k0))
    dry = frame.pivot_table(index="time", columns="device_id", values="dry")  # configured kappa, mean per bucket
    monitor = _reference(readings, refs, dry.index, every)
    grid = np.round(np.arange(KAPPA_BOUNDS[0], KAPPA_BOUNDS[1] + KAPPA_STEP / 2, KAPPA_STEP), 4)
    hour_of = pd.DatetimeIndex(dry.index).floor("1h")
    out: dict[str, float] = {}
    per = {str(d): own for d, own in frame.groupby("device_id", sort=True)}
    for d, own in per.items():
        near = dry[d].notna() & (monitor > 0)
        if _hours(near, hour_of) >= MIN_HOURS:  # beside a reference monitor: nothing assumed
            ok, ref = near, monitor
        else:
            others = dry.drop(columns=d)
            ref = others.median(axis=1, skipna=True)
            ok = dry[d].notna() & (others.notna().sum(axis=1) >= MIN_OTHERS) & (ref > 0)
        kappa = _fit_one(own, ok, ref, hour_of, grid)
        if kappa is not None:
            out[d] = kappa
    if out:  # a monitor with too few hours (a new ISPU station) is left out, as in the first pass
        anchored = _hours(monitor > 0, hour_of) >= MIN_HOURS
        out.update(_against_consensus(per, out, dry, monitor if anchored else None, hour_of, grid))
    return out


def _fit_one(own: pd.DataFrame, ok: pd.Series, ref: pd.Series, hour_of: pd.Index, grid: np.ndarray) -> float | None:
    """The kappa of ``grid`` whose dried readings of one station (``own``: time floored to the
    bucket, pm25, relativeHumidity) keep the flattest log ratio to ``ref`` (ug/m3 per bucket) over
    the buckets where ``ok``: the smallest trimmed spread (:data:`TRIM`) around the median ratio
    (the site's scale). None with under :data:`MIN_HOURS` hours or :data:`MIN_RH_RANGE` of RH."""
    if _hours(ok, hour_of) < MIN_HOURS:
        return None
    own = own[own["time"].map(ok).fillna(False).to_numpy(dtype=bool)].sort_values("time")
    r = own["relativeHumidity"].to_numpy(dtype=float)
    if np.quantile(r, 0.9) - np.quantile(r, 0.1) < MIN_RH_RANGE:
        return None
    times = pd.DatetimeIndex(own["time"])
    keys = times.asi8
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    means = np.add.reduceat(own["pm25"].to_numpy(dtype=float)[None, :] / growth(r[None, :], grid[:, None]),
                            starts, axis=1) / counts
    res = np.log(means) - np.log(ref.reindex(times[starts]).to_numpy(dtype=float))[None, :]
    dev = np.sort(np.abs(res - np.median(res, axis=1)[:, None]), axis=1)[:, :max(1, int(res.shape[1] * TRIM))]
    return float(grid[int(np.argmin(np.mean(dev**2, axis=1)))])


def _against_consensus(per: dict[str, pd.DataFrame], first: dict[str, float], dry: pd.DataFrame,
                       monitor: pd.Series | None, hour_of: pd.Index, grid: np.ndarray) -> dict[str, float]:
    """Second pass: each station fitted again against the median of the other stations, each dried
    with its first-pass kappa and brought to one scale, in every bucket with at least
    :data:`MIN_OTHERS` series. Where the city has a reference monitor, the monitor is one of the
    series and sets the scale (each station's median ratio to it), and only buckets it reported in
    count; without one, the scale is the network's median of those series.

    Fitted against the monitor alone, every station carries the monitor's own wander (its sampling
    noise, its street, a plume beside it) into its kappa besides its own. The median of the
    calibrated network keeps the monitor's level (each series is scaled to it; a bias the first pass
    shares stays) and makes the monitor's wander one series among many (node-to-node calibration
    against a network a reference anchors, Kizel et al. 2018; the median of calibrated neighbours as
    the proxy, Miskell et al. 2018). On the tuning city's seeds 1-10 (20 stations, one T640) this
    pass took the fitted kappas from 0.022 to 0.020 off on average, and with :data:`TRIM` to 0.018.

    Without a monitor, the first pass compares each station with the plain median of the others
    dried at the configured kappa: which station is the median moves with the humidity (a clean
    site with a large kappa overtakes a dirty one with a small kappa in the humid night), and that
    shift enters every fit. Calibrated and on one scale first, the others' median moves with the
    air only. On the tuning seeds without a reference (banyuwangi-like 1-6, small 1-5, makassar 1-5
    with its monitor left out) the mean kappa error went 0.053 / 0.039 / 0.033 -> 0.040 / 0.041 /
    0.033, and ``pm25_high`` precision 0.875 / 0.975 / 0.92 -> 1.00 / 1.00 / 0.95 (recall 0.84 /
    0.93 / 0.90 -> 0.88 / 0.93 / 0.91). The level of the whole network stays the configured kappa's
    (the median of the first pass): without a reference nothing in the data sets it.

    Returns:
        device id -> kappa for the stations the second pass could fit (the others keep the first).
    """
    calibrated = {d: (per[d]["pm25"] / growth(per[d]["relativeHumidity"].to_numpy(dtype=float), k)).groupby(
        per[d]["time"]).mean().reindex(dry.index) for d, k in first.items()}
    anchor = monitor if monitor is not None else pd.DataFrame(calibrated, index=dry.index).median(axis=1)
    scaled: dict[str, pd.Series] = {}
    for d, series in calibrated.items():
        ratio = (series / anchor).to_numpy(dtype=float)
        ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
        if len(ratio):
            scaled[d] = series / float(np.median(ratio))
    table = pd.DataFrame(scaled, index=dry.index)
    if monitor is not None:
        table = table.assign(**{_MONITOR: monitor})
    beside = monitor > 0 if monitor is not None else pd.Series(True, index=dry.index)
    out: dict[str, float] = {}
    for d in first:
        others = table.drop(columns=d, errors="ignore")
        ref = others.median(axis=1, skipna=True)
        ok = dry[d].notna() & beside & (others.notna().sum(axis=1) >= MIN_OTHERS) & (ref > 0)
        again = _fit_one(per[d], ok, ref, hour_of, grid)
        if again is not None:
            out[d] = again
    return out


_MONITOR = "__reference_monitor__"
"""Column of the monitors' median in the consensus table (no device id has this form)."""


def _hours(ok: pd.Series, hour_of: pd.Index) -> int:
    """Clock hours holding at least one bucket where ``ok`` (a 10-minute bucket lost to a shower's
    RH over ``rh_max`` or to a lost uplink does not take the hour away)."""
    return int(pd.Index(hour_of[ok.to_numpy(dtype=bool)]).nunique())


def _reference(readings: pd.DataFrame, refs: list[str], index: pd.Index, every: pd.Timedelta) -> pd.Series:
    """The reference monitors' median PM2.5 (ug/m3, as read: dry) per ``every``-long bucket, each
    monitor's readings of the bucket averaged, on ``index`` (NaN where none reported; every bucket
    NaN without ``refs``)."""
    rows = readings[readings["device_id"].isin(refs) & (readings["pm25"] > 0)]
    if rows.empty:
        return pd.Series(np.nan, index=index, dtype=float)
    rows = rows.assign(time=rows["time"].dt.floor(every))
    return rows.pivot_table(index="time", columns="device_id", values="pm25").median(axis=1).reindex(index)


_KAPPAS: PerLocalDay[dict[str, float]] = PerLocalDay()


def fitted_models(influx: InfluxClient, now: datetime, cfg: AnalyticsSettings,
                  models: dict[str, humidity.PmSensorModel],
                  device_models: dict[str, str]) -> dict[str, humidity.PmSensorModel]:
    """``models`` with each station's fitted kappa (:func:`fit_kappas` on the readings of the
    ``spike_profile_days`` days before the current local midnight in :data:`FIT_BUCKET` buckets, one
    InfluxQL query per process and local day, so a run repeated at the same time sees the same kappas;
    a week of 20 stations reporting every 5 minutes is 40,000 points).

    Stations whose registry model has a kappa set in ``pm_kappa_by_model`` (fitted against a
    reference monitor) keep it; nothing is fitted when ``pm_kappa_fit`` is off.

    Args:
        models: device id -> sensor model (:func:`analytics.air.sensor_models`).
        device_models: device id -> registry ``model``.

    Returns:
        device id -> sensor model, kappa replaced where a fit was possible.
    """
    if not cfg.pm_kappa_fit or cfg.spike_profile_days <= 0:
        return models
    free = {d: m for d, m in models.items() if device_models.get(d) not in cfg.pm_kappa_by_model}

    def learn(midnight: datetime) -> dict[str, float]:
        points = window_points(influx, schema.MEASUREMENT_AIR, [schema.FIELD_PM25, "relativeHumidity"],
                               midnight - timedelta(days=cfg.spike_profile_days), midnight)
        return fit_kappas(points, free, FIT_BUCKET) if not points.empty else {}

    key = (cfg.spike_profile_days, tuple(sorted((d, m.kappa) for d, m in free.items())))
    kappas = _KAPPAS.get(influx, now, cfg.timezone, key, learn)
    return {d: replace(m, kappa=kappas[d]) if d in kappas and d in free else m for d, m in models.items()}
