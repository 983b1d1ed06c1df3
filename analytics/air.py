"""Air-station data for the rules: humidity-corrected PM2.5, robust spike scores, ISPU / US AQI.

Humidity correction (:mod:`analytics.humidity`) is applied per device model when configured
(settings ``pm_sensor_by_model``, ``pm_kappa_by_model``), to each bucket's mean PM with the
same bucket's mean relative humidity. Averages of averages: the published corrections were fitted
on 24 h (Barkjohn et al. 2021) or per-reading (Crilley et al. 2018) data; an hourly or
10-minute mean lies between and is what InfluxDB hands back cheaply.

Spikes: a Hampel-type test against the same time of day. PM2.5 in a city follows the day
(traffic in the morning and evening, a shallow boundary layer at night), so the morning rise is
"many sigmas" above a plain 24-hour median although it happens every day. Each station's **daily
profile** is the median of its 10-minute buckets at the same local time of day (within
:data:`PROFILE_HALF_WIDTH_SLOTS` buckets either side) over the ``spike_profile_days`` days before
today (a time-of-day median: the seasonal part of an STL decomposition, Cleveland et al. 1990,
J. Off. Stat. 6:3-73); it is learned once a day, so today's spike never enters it. A
bucket's residual is its value minus the profile at its time of day. For each 10-minute bucket the
baseline is the median and the MAD (median absolute deviation) of the residuals over the preceding
``spike_baseline_h`` hours, excluding the ``spike_persistence`` newest buckets so that a lasting
spike does not raise its own baseline (so a day whose level is higher all day does not spike
either). A station without half a day's profile (:data:`PROFILE_MIN_SLOTS`) is scored on its raw
buckets (profile 0). ``z = (x - median) / (1.4826 * MAD)`` is the modified z-score of Iglewicz and
Hoaglin (1993, "How to Detect and Handle Outliers", ASQC), who flag |z| > 3.5 (the default
``spike_z``); 1.4826 makes the MAD estimate sigma for normal data (Leys et al. 2013, J. Exp.
Soc. Psychol. 49:764). The MAD is floored at :data:`MAD_FLOOR_UGM3` and at the spread of the station's buckets around
its profile at that time of day over the same days (:func:`profile_spread`: the morning rise
varies from day to day with the weather, the night hardly; 1.4826 x spread estimates that
day-to-day sigma as it does the MAD's), and a spike must also
exceed the median by ``spike_min_excess_ugm3``: at night a clean station's MAD can be a fraction
of a microgram and every breath of smoke would be "4 sigma".
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics import aqi, humidity
from analytics.frames import PerLocalDay, window_points
from lorong.core import schema
from lorong.core.settings import ONSET_LOOKBACK_MIN, AnalyticsSettings
from lorong.storage.influx import InfluxClient

BUCKET = timedelta(minutes=10)
SCORED = timedelta(minutes=ONSET_LOOKBACK_MIN)
"""How far back buckets are scored (:func:`score_spikes` horizon in the job): the spike rule reads
the newest ``spike_persistence`` buckets, the episode rule the last hour and each spike's onset."""
"""Spike buckets (InfluxQL ``GROUP BY time(10m)``)."""
MAD_FLOOR_UGM3 = 1.0
"""Smallest MAD used, ug/m3 (about the 1 ug/m3 resolution of SDS011/PMS5003 outputs)."""
MIN_BASELINE_BUCKETS = 36
"""A station needs six hours of buckets in its baseline window before it can spike."""
HIGH_CONFIRM = timedelta(minutes=10)
"""``pm25_high`` opens when the hour's mean is over the limit now and was this long before too
(:func:`last_hour`): an exceedance the operator needs lasts 20 minutes or more (the simulated
truth's rule, firmware_sim/SCENARIO.md), and the corrected mean of humid hours crosses the limit
for one 10-minute step and falls back when the fitted kappa is a little low. On the tuning seeds
(makassar 1-30 with 20 stations and 1-8 with 10, measured offline) false alarms went 23 -> 7 and
hits 1,364 -> 1,368: an alert opened on a blip before an hour that really went over stayed open
through it, unmatched, and that hour was missed."""
SHARED_RISE = timedelta(hours=1)
"""How long the city holds a common rise before it comes off only the stations that shared it
(:func:`_common_rise`): the rule's onset window for an episode (``episode_onset_window_min``,
"3 stations within the hour")."""
MIN_PEERS = 5
"""Stations with a baseline in the same bucket needed before the city's common rise is taken off
a station's excess (:func:`score_spikes` ``local_excess``)."""
GASES = ("so2", "co", "o3", "no2")
"""Gas fields that enter the ISPU when a station reports them (ug/m3)."""
PROFILE_HALF_WIDTH_SLOTS = 6
"""The daily profile at a time of day is the median of buckets within an hour of it (our choice:
wide enough for a dozen buckets a day, narrow against the two-hour morning rise)."""
PROFILE_MIN_VALUES = 6
"""A time of day needs this many buckets in its window (half a day's worth) to have a profile."""
SLOTS_PER_DAY = 144
MIN_SPREAD_DAYS = 3
"""Days a time of day needs before its measured spread counts (with fewer, the least spread,
:data:`DAY_TO_DAY_REL_SPREAD`, is used): the median of two deviations is their mean, so one day
with a plume at that hour sets the spread (it hid a +117 ug/m3 plume the next evening); a median
of three is the smallest that one odd day cannot move (breakdown point)."""
PROFILE_MIN_SLOTS = 72
"""A station needs a profile at this many times of day (half the day) to have one; the others
are interpolated from the nearest known times (:func:`fill_circular`). Humid nights above the
correction's ``rh_max`` (or a few hours offline) leave holes; without a profile the whole next day
was scored on raw buckets and its morning rise was a spike (our choice: half a day known, a
smooth daily cycle in between)."""
DAY_TO_DAY_REL_SPREAD = 0.2
"""Least day-to-day spread of PM2.5 at a time of day, as a fraction of the station's daily level
(the median of its profile). In DKI Jakarta's daily PM2.5 (tests/data/jakarta-ispu, 2010-2025,
five stations, ISPU sub-indices turned back into ug/m3 with the Permen LHK P.14/2020 bands), a
day's mean differs from the day before by a median of 0.21 of it (938 pairs of days; rounded
down); an hour of the day varies at least as much as the day's mean. Without it a station with one
day of history has spread 0 and every morning stronger than yesterday's (the weather) scores as a
spike; with two or three days the median of two or three deviations is a poor estimate of the spread."""
MIN_HOURS_24H = 18
"""EPA's 75 % completeness for a 24-hour average (40 CFR 50 App. N, 18 of 24 hours); fewer hours
are still reported, flagged ``aqi_complete: false``."""


def sensor_models(models: dict[str, str], cfg: AnalyticsSettings) -> dict[str, humidity.PmSensorModel]:
    """The humidity-correction model of each station whose registry model is configured.

    Args:
        models: device id -> registry ``model`` string.
        cfg: settings (``pm_sensor_by_model``, ``pm_kappa_by_model``).

    Returns:
        device id -> sensor model (kappa-Koehler with the configured kappa when one is set).

    Raises:
        ValueError: a configured sensor model name is unknown.
    """
    out: dict[str, humidity.PmSensorModel] = {}
    for device_id, model in models.items():
        kappa = cfg.pm_kappa_by_model.get(model)
        name = cfg.pm_sensor_by_model.get(model)
        if name is None and kappa is None:
            continue
        base = humidity.get_sensor_model(name) if name else humidity.PmSensorModel(model, 1000.0, 1000.0)
        if kappa is not None:
            base = replace(base, correction=humidity.Correction.KAPPA_KOEHLER, kappa=kappa)
        out[device_id] = base
    return out


def _correct(pm: float, rh: float, model: humidity.PmSensorModel | None, pollutant: str) -> float:
    if model is None or math.isnan(pm) or model.correction is humidity.Correction.NONE:
        return pm  # a dry monitor (a reference) needs no humidity
    if model.correction is humidity.Correction.EPA_BARKJOHN_2021 and pollutant != "pm25":
        return pm  # the EPA fit is for PM2.5 only
    if math.isnan(rh):
        return float("nan")  # no humidity, no trustworthy corrected value
    try:
        return humidity.correct_pm(model, pm, rh)
    except ValueError:  # RH above rh_max (fog) or out of range
        return float("nan")


def correct_frame(frame: pd.DataFrame, models: dict[str, humidity.PmSensorModel], pollutant: str) -> pd.Series:
    """Humidity-corrected ``frame[pollutant]`` (ug/m3), row by row.

    Args:
        frame: columns device_id, ``pollutant`` and ``relativeHumidity`` (fraction; may be absent).
        models: device id -> sensor model; stations without one are returned unchanged.
        pollutant: ``pm25`` or ``pm10``.

    Returns:
        Float series aligned with ``frame``; NaN where a correction was needed but the humidity is
        missing or above the model's ``rh_max``.
    """
    if frame.empty or not models:
        return frame[pollutant].astype(float) if pollutant in frame else pd.Series(dtype=float)
    rh = frame["relativeHumidity"] if "relativeHumidity" in frame else pd.Series(np.nan, index=frame.index)
    kappa = {d: m for d, m in models.items()
             if m.correction is humidity.Correction.KAPPA_KOEHLER and m.kappa is not None}
    dry = sum(m.correction is humidity.Correction.NONE for m in models.values())
    if len(kappa) + dry == len(models):  # the usual case, vectorised: the same formula as kappa_correct
        dev = frame["device_id"].astype(str)
        k = dev.map({d: m.kappa for d, m in kappa.items()}).to_numpy(dtype=float)
        top = dev.map({d: m.rh_max for d, m in kappa.items()}).to_numpy(dtype=float)
        pm, h = frame[pollutant].to_numpy(dtype=float), rh.to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = 1.0 + (k / humidity.PARTICLE_DENSITY_G_CM3) / (1.0 / h - 1.0)
            out = np.where(np.isnan(k), pm, np.where((h <= top) & (h >= 0), pm / c, np.nan))
        return pd.Series(np.where(np.isnan(pm), np.nan, out), index=frame.index, dtype=float)
    return pd.Series([_correct(float(p), float(h), models.get(str(d)), pollutant)
                      for d, p, h in zip(frame["device_id"], frame[pollutant], rh, strict=True)],
                     index=frame.index, dtype=float)


def last_hour(influx: InfluxClient, now: datetime, models: dict[str, humidity.PmSensorModel]) -> pd.DataFrame:
    """Humidity-corrected PM2.5 mean per station over ``(now - 1 h, now]``: each reading corrected at its
    own RH, then averaged; and the same hour's mean :data:`HIGH_CONFIRM` earlier.

    The kappa-Koehler growth factor is far from linear in RH, so the correction of the hour's mean
    reading at the hour's mean RH is not the hour's mean dry mass: when a shower begins within the hour
    (a few readings at 98 % RH, five times the dry mass), the mean reading and the mean RH (under the
    correction's ``rh_max``) gave an hour several times too high. Readings above ``rh_max`` (or
    without RH, for a model that needs it) are left out, as :func:`correct_frame` leaves them.

    Returns:
        Frame indexed by device_id, columns ``pm25`` (ug/m3; NaN when no reading of the hour could be
        corrected), ``n`` (readings averaged) and ``pm25_before`` (the mean over ``(now - 1 h -
        HIGH_CONFIRM, now - HIGH_CONFIRM]``, NaN without a corrected reading there).
    """
    points = window_points(influx, schema.MEASUREMENT_AIR, [schema.FIELD_PM25, "relativeHumidity"],
                           now - timedelta(hours=1) - HIGH_CONFIRM, now)
    if points.empty:
        return pd.DataFrame({"pm25": pd.Series(dtype=float), "n": pd.Series(dtype=float),
                             "pm25_before": pd.Series(dtype=float)}, index=pd.Index([], name="device_id"))
    points["pm25"] = correct_frame(points, models, "pm25")
    t = points["time"]
    hour = points[t > pd.Timestamp(now - timedelta(hours=1))].groupby("device_id")["pm25"]
    earlier = points[t <= pd.Timestamp(now - HIGH_CONFIRM)].groupby("device_id")["pm25"].mean()
    out = pd.DataFrame({"pm25": hour.mean(), "n": hour.count().astype(float)})
    out["pm25_before"] = earlier.reindex(out.index)
    return out


def corrected_buckets(influx: InfluxClient, start: datetime, end: datetime,
                      models: dict[str, humidity.PmSensorModel], every_s: int = 600) -> pd.DataFrame:
    """PM2.5 per station in ``every_s``-long buckets (aligned to the epoch, as InfluxQL's
    ``GROUP BY time``) of ``(start, end]``: the mean of the bucket's readings, each corrected at its
    own RH (:func:`correct_frame`; readings it cannot correct are left out), for the reason
    :func:`last_hour` gives.

    Returns:
        Long frame: device_id, time (bucket start, UTC), pm25 (ug/m3); buckets without a corrected
        reading are absent.
    """
    points = window_points(influx, schema.MEASUREMENT_AIR, [schema.FIELD_PM25, "relativeHumidity"], start, end)
    if points.empty:
        return pd.DataFrame({"device_id": pd.Series(dtype=str), "time": pd.Series(dtype="datetime64[ns, UTC]"),
                             "pm25": pd.Series(dtype=float)})
    points["pm25"] = correct_frame(points, models, "pm25")
    points = points.dropna(subset=["pm25"])
    points["time"] = points["time"].dt.floor(f"{every_s}s")
    return points.groupby(["device_id", "time"], as_index=False, sort=True)[["pm25"]].mean()


def buckets(influx: InfluxClient, now: datetime, cfg: AnalyticsSettings,
            models: dict[str, humidity.PmSensorModel], stations: Collection[str] | None = None) -> pd.DataFrame:
    """10-minute PM2.5 means per station over the baseline window plus the scored hours
    (:data:`SCORED`), corrected (:func:`corrected_buckets`); only ``stations`` when given (a city's:
    the spike rule's common rise is the median of the stations in a bucket, another city's would move it).

    Returns:
        Long frame: device_id, time (bucket start, UTC), pm25 (ug/m3).
    """
    start = now - timedelta(hours=cfg.spike_baseline_h) - SCORED - cfg.spike_persistence * BUCKET
    return _only(corrected_buckets(influx, start, now, models, int(BUCKET.total_seconds())), stations)


def _only(frame: pd.DataFrame, stations: Collection[str] | None) -> pd.DataFrame:
    """The rows of ``frame`` whose device_id is in ``stations`` (all when None), index renumbered."""
    if stations is None:
        return frame
    return frame[frame["device_id"].isin(list(stations))].reset_index(drop=True)


def time_of_day_slots(t: pd.Series, tz: str) -> np.ndarray:
    """Local time of day of each time as a 10-minute slot 0..143."""
    local = t.dt.tz_convert(tz)
    slots: np.ndarray = (local.dt.hour * 6 + local.dt.minute // 10).to_numpy(dtype=int)
    return slots


def slot_windows(slots: np.ndarray, days: np.ndarray | None = None,
                 plume: np.ndarray | None = None) -> list[np.ndarray]:
    """For each of the 144 times of day, which values its profile is made of: those within
    :data:`PROFILE_HALF_WIDTH_SLOTS` slots of it (circularly), less the ``plume`` ones
    (:func:`local_plumes`) unless they are the station's own rhythm there: on at least
    :data:`MIN_SPREAD_DAYS` days (the fewest that one odd day cannot make, as for the spread) and on
    most of the days with values there (then the median day, which the profile is, has them anyway).
    A station that burned at 17:30 on two days (of two or three with data) is not a station whose
    17:30 is a plume; a bump a station has on every day or most days (a market, a school), which
    the other stations lack, stays in its profile.

    Args:
        slots: 10-minute slot of each value, 0..143.
        days: the local day of each value (any integer per day); needed with ``plume``.
        plume: bool per value, or None (every value near the slot).

    Returns:
        144 bool masks over the values.
    """
    out = []
    for s in range(SLOTS_PER_DAY):
        d = np.abs(slots - s)
        near = np.minimum(d, SLOTS_PER_DAY - d) <= PROFILE_HALF_WIDTH_SLOTS
        if plume is not None and days is not None and (near & plume).any():
            n_plume, n_days = len(np.unique(days[near & plume])), len(np.unique(days[near]))
            if n_plume < MIN_SPREAD_DAYS or 2 * n_plume <= n_days:
                near = near & ~plume
        out.append(near)
    return out


def local_plumes(frame: pd.DataFrame, cfg: AnalyticsSettings) -> np.ndarray:
    """Which buckets stand far above the city at that moment: the rule's own local spike test
    (modified z >= ``spike_z`` and excess >= ``spike_min_excess_ugm3``, Iglewicz and Hoaglin 1993),
    with the station's expected value taken from the other stations at that moment instead of from
    its own past: the city's level (the median of the bucket's stations, when at least
    :data:`MIN_PEERS` have one) times the station's usual ratio to it (the median ratio over all its
    buckets: a site nearer a road reads higher all day). The city's level carries the weather, the
    morning rise and rain washout, which every station shares; the ratio is multiplicative because
    a shallower mixing layer concentrates every station's PM alike. z divides by 1.4826 x the MAD of
    the station's deviations from that expectation (floored at :data:`MAD_FLOOR_UGM3`).

    Args:
        frame: device_id, time (bucket start), pm25 (ug/m3) of all stations.
        cfg: ``spike_z``, ``spike_min_excess_ugm3``.

    Returns:
        bool per row of ``frame`` (positional); False where the bucket has too few peers.
    """
    if frame.empty:
        return np.zeros(0, dtype=bool)
    x = frame["pm25"].astype(float)
    city = frame.groupby("time")["pm25"].agg(["median", "count"])
    level = frame["time"].map(city["median"].where(city["count"] >= MIN_PEERS)).astype(float)
    dev = frame["device_id"].astype(str)
    ratio = (x / level.where(level > 0)).groupby(dev).transform("median")
    resid = x - ratio * level
    excess = resid - resid.groupby(dev).transform("median")
    mad = excess.abs().groupby(dev).transform("median").clip(lower=MAD_FLOOR_UGM3)
    z = excess / (1.4826 * mad)
    flagged = (z >= cfg.spike_z) & (excess >= cfg.spike_min_excess_ugm3)
    return flagged.fillna(False).to_numpy(dtype=bool)


def daily_profile(slots: np.ndarray, x: np.ndarray, windows: list[np.ndarray] | None = None) -> np.ndarray:
    """Median of ``x`` per time of day (see the module docstring).

    Args:
        slots: 10-minute slot of each value, 0..143 (local time of day).
        x: the values (ug/m3).
        windows: the values of each time of day (:func:`slot_windows`; default: all within
            :data:`PROFILE_HALF_WIDTH_SLOTS`).

    Returns:
        144 medians; NaN where fewer than :data:`PROFILE_MIN_VALUES` values fall within
        :data:`PROFILE_HALF_WIDTH_SLOTS` slots (circularly).
    """
    out = np.full(SLOTS_PER_DAY, np.nan)
    if len(x) == 0:
        return out
    for s, window in enumerate(windows if windows is not None else slot_windows(slots)):
        near = x[window]
        if len(near) >= PROFILE_MIN_VALUES:
            out[s] = float(np.median(near))
    return out


def profile_spread(slots: np.ndarray, days: np.ndarray, x: np.ndarray, profile: np.ndarray,
                   windows: list[np.ndarray] | None = None) -> np.ndarray:
    """How much a station's days differ at each time of day: for each of the 144 slots, the median
    over the days of ``|that day's median within PROFILE_HALF_WIDTH_SLOTS of the slot - profile|``
    (the morning rise is stronger on a still day, the night hardly differs), and at least
    :data:`DAY_TO_DAY_REL_SPREAD` x the median of the profile (the station's daily level: one day
    of history measures no spread at all; the median, so that yesterday's plume at that hour
    does not hide today's); that least spread alone where fewer than :data:`MIN_SPREAD_DAYS`
    days have values near the slot; NaN where the profile is.

    Args:
        slots, x: as for :func:`daily_profile`.
        days: the local day of each value (any integer per day).
        profile: the 144 values :func:`daily_profile` gave for them.
        windows: as for :func:`daily_profile` (a day whose values there were all plumes is no day
            of that time of day).

    Returns:
        144 spreads, ug/m3.
    """
    out = np.full(SLOTS_PER_DAY, np.nan)
    if len(x) == 0:
        return out
    day_ids = np.unique(days)
    least = DAY_TO_DAY_REL_SPREAD * abs(float(np.nanmedian(profile))) if not np.isnan(profile).all() else 0.0
    for s, near in enumerate(windows if windows is not None else slot_windows(slots)):
        per_day = [float(np.median(x[near & (days == k)])) for k in day_ids if (near & (days == k)).any()]
        if per_day and not np.isnan(profile[s]):
            measured = float(np.median(np.abs(np.array(per_day) - profile[s])))
            out[s] = max(measured, least) if len(per_day) >= MIN_SPREAD_DAYS else least
    return out


def fill_circular(values: np.ndarray) -> np.ndarray:
    """The 144 values of a daily profile with its NaN slots filled by linear interpolation
    between the nearest known slots, around midnight too (``numpy.interp`` with ``period``).

    Raises:
        ValueError: no known slot.
    """
    known = ~np.isnan(values)
    if known.all():
        return values
    if not known.any():
        raise ValueError("a profile without any known time of day cannot be filled")
    idx = np.arange(len(values), dtype=float)
    filled: np.ndarray = np.interp(idx, idx[known], values[known], period=len(values))
    return filled


def station_profile(slots: np.ndarray, days: np.ndarray, x: np.ndarray,
                    plume: np.ndarray | None = None) -> np.ndarray | None:
    """One station's profile and spread (:func:`daily_profile`, :func:`profile_spread`), holes
    filled (:func:`fill_circular`), or None when fewer than :data:`PROFILE_MIN_SLOTS` times of
    day have one.

    Args:
        slots, days, x: as for :func:`profile_spread` (ug/m3, NaN-free).
        plume: bool per value, the station's own local plumes (:func:`local_plumes`), which stay
            out unless they are its own rhythm (:func:`slot_windows`); None: every value counts.

    Returns:
        A (2, 144) array (level, spread; ug/m3) or None.
    """
    windows = slot_windows(slots, days, plume)
    prof = daily_profile(slots, x, windows)
    if int(np.isnan(prof).sum()) > SLOTS_PER_DAY - PROFILE_MIN_SLOTS:
        return None
    return np.vstack([fill_circular(prof), fill_circular(profile_spread(slots, days, x, prof, windows))])


def profiles_from_buckets(frame: pd.DataFrame, cfg: AnalyticsSettings) -> dict[str, np.ndarray]:
    """Each station's profile and spread (:func:`station_profile`) from its 10-minute buckets,
    its own local plumes (:func:`local_plumes`) left out unless they are its rhythm (:func:`slot_windows`).

    Args:
        frame: device_id, time (bucket start, UTC), pm25 (ug/m3, NaN-free): the days the profile
            is learned from (:func:`corrected_buckets`).
        cfg: ``timezone`` (local time of day and local days).

    Returns:
        device id -> a (2, 144) array, for the stations :func:`station_profile` gives one.
    """
    out: dict[str, np.ndarray] = {}
    if frame.empty:
        return out
    frame = frame.reset_index(drop=True)
    plume = local_plumes(frame, cfg)
    for device_id, g in frame.groupby("device_id", sort=True):
        slots, x = time_of_day_slots(g["time"], cfg.timezone), g["pm25"].to_numpy(dtype=float)
        days = g["time"].dt.tz_convert(cfg.timezone).dt.date.map(lambda d: d.toordinal()).to_numpy()
        prof = station_profile(slots, days, x, plume[g.index.to_numpy()])
        if prof is not None:
            out[str(device_id)] = prof
    return out


_PROFILES: PerLocalDay[dict[str, np.ndarray]] = PerLocalDay()


def station_profiles(influx: InfluxClient, now: datetime, cfg: AnalyticsSettings,
                     models: dict[str, humidity.PmSensorModel],
                     stations: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Each station's daily profile (:func:`daily_profile` of its corrected 10-minute buckets)
    from the ``spike_profile_days`` days before the current local midnight; one InfluxQL query
    per process and local day (:class:`analytics.frames.PerLocalDay`), so a run repeated at the
    same time sees the same profile, and a spike of today never enters it. Only ``stations`` when
    given (a city's: its own plumes are judged against the median of its stations,
    :func:`local_plumes`).

    Returns:
        device id -> a (2, 144) array: the expected PM2.5 at each time of day (ug/m3) and its
        spread (:func:`profile_spread`), for stations with a profile at
        :data:`PROFILE_MIN_SLOTS` times of day or more (holes interpolated).
    """
    if cfg.spike_profile_days <= 0:
        return {}

    def learn(midnight: datetime) -> dict[str, np.ndarray]:
        return profiles_from_buckets(_only(corrected_buckets(
            influx, midnight - timedelta(days=cfg.spike_profile_days), midnight, models,
            int(BUCKET.total_seconds())), stations), cfg)

    key = (cfg.spike_profile_days, tuple(sorted(models)), tuple(sorted(stations)) if stations is not None else None)
    return _PROFILES.get(influx, now, cfg.timezone, key, learn)


def score_spikes(frame: pd.DataFrame, now: datetime, cfg: AnalyticsSettings,
                 horizon: timedelta = timedelta(hours=1),
                 profiles: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Modified z-score of each bucket in the last ``horizon`` against its station's baseline.

    Args:
        frame: device_id, time (bucket start), pm25 (see :func:`buckets`).
        now: the run's time.
        cfg: ``spike_z``, ``spike_min_excess_ugm3``, ``spike_baseline_h``, ``spike_persistence``,
            ``timezone`` (local time of day).
        horizon: how far back buckets are scored.
        profiles: each station's daily profile (:func:`station_profiles`: level and spread, or
            the 144 levels alone); a station without one is scored on its raw buckets. The MAD a
            bucket's z divides by is at least the profile's spread at its time of day.

    Returns:
        Frame with device_id, time, pm25, median (the expected level: profile plus the median
        residual), mad, z, excess (ug/m3) and spike (bool); z is NaN when the baseline holds
        fewer than :data:`MIN_BASELINE_BUCKETS` buckets. ``local_excess``, ``local_z`` and
        ``local_spike``: the same after taking off the city's common rise (the median excess of
        the bucket's stations, when at least :data:`MIN_PEERS` have one, and only a rise): a
        local source (``pm25_spike``) against a city-wide one (``pm25_episode``).
    """
    rows: list[dict[str, Any]] = []
    cut = pd.Timestamp(now - horizon)
    gap = cfg.spike_persistence * BUCKET
    base_len = timedelta(hours=cfg.spike_baseline_h)
    for device_id, g in frame.groupby("device_id", sort=True):
        t, x = g["time"], g["pm25"].to_numpy(dtype=float)
        prof = (profiles or {}).get(str(device_id))
        slot = time_of_day_slots(t, cfg.timezone)
        level, spread = (prof, None) if prof is None or prof.ndim == 1 else (prof[0], prof[1])
        expected = level[slot] if level is not None else np.zeros(len(x))
        floor = np.nan_to_num(spread[slot], nan=0.0) if spread is not None else np.zeros(len(x))
        resid = x - expected
        for i in np.flatnonzero((t > cut).to_numpy()):
            ts = t.iloc[i]
            in_base = ((t >= ts - gap - base_len) & (t < ts - gap)).to_numpy()
            med = mad = z = before = float("nan")
            if in_base.sum() >= MIN_BASELINE_BUCKETS:
                base = resid[in_base]
                med = float(np.median(base))
                mad = float(np.median(np.abs(base - med)))
                z = (resid[i] - med) / (1.4826 * max(mad, MAD_FLOOR_UGM3, float(floor[i])))
                hour_before = ((t >= ts - 2 * SHARED_RISE) & (t < ts - SHARED_RISE)).to_numpy()
                if hour_before.any():  # before a plume of the last hour: the station's own share
                    before = float(np.median(resid[hour_before])) - med
            excess = resid[i] - med
            rows.append({"device_id": str(device_id), "time": ts, "pm25": x[i], "median": med + expected[i],
                         "mad": mad, "z": z, "excess": excess, "before": before,
                         "spike": bool(z >= cfg.spike_z and excess >= cfg.spike_min_excess_ugm3)})
    cols = ["device_id", "time", "pm25", "median", "mad", "z", "excess", "before", "spike"]
    out = pd.DataFrame(rows, columns=cols)
    out["local_excess"] = out["excess"] - _common_rise(out)
    out["local_z"] = out["z"] * (out["local_excess"] / out["excess"].where(out["excess"] != 0))
    out["local_z"] = out["local_z"].where(out["excess"] != 0, out["z"])
    out["local_spike"] = (out["local_z"] >= cfg.spike_z) & (out["local_excess"] >= cfg.spike_min_excess_ugm3)
    return out.drop(columns="before")


def _common_rise(out: pd.DataFrame) -> pd.Series:
    """The part of each row's excess (ug/m3) that the city shares (see :func:`score_spikes`).

    The city's common rise (weather: a stronger morning, a low mixing height; an episode) is in
    the excess of the stations it reaches: the median excess of the bucket's stations, when
    :data:`MIN_PEERS` have a baseline, and only a rise. The part of it the city already held an
    hour earlier (the median over stations of their median excess from 2 h to 1 h before,
    :data:`SHARED_RISE`) comes off a station only as far as that station shared it then (its own
    median excess in that hour); the rest, a rise of the last hour, comes off every station:
    nothing tells yet which stations it reaches. A station the episode did not reach stood at its
    baseline all along, and a plume there during the episode is local (tuning city seed 8: 12 of
    20 stations in an episode took 40 ug/m3 off every station, and a 48 ug/m3 plume at one of the
    others was missed). The hour is taken before the last one so that a plume of the last hour is
    not read as the station's share.

    Args:
        out: rows of :func:`score_spikes` with ``time``, ``excess`` and ``before`` (the station's
            median excess from 2 h to 1 h before the bucket, NaN without a reading then).

    Returns:
        ug/m3 per row, >= 0.
    """
    def city(col: str) -> pd.Series:
        valid = out[col].notna()
        peers = out[valid].groupby("time")[col].agg(["median", "count"])
        return out["time"].map(peers["median"].where(peers["count"] >= MIN_PEERS, 0.0).clip(lower=0.0)).fillna(0.0)

    now, held = city("excess"), city("before")
    established = now.where(now < held, held)
    share = out["before"].clip(lower=0.0).fillna(established)
    return (now - established) + share.where(share < established, established)


def aqi_derived(influx: InfluxClient, now: datetime,
                models: dict[str, humidity.PmSensorModel]) -> dict[str, dict[str, Any]]:
    """ISPU and US AQI per station from hourly means over the last 24 h (pulled with InfluxQL).

    The 24-hour concentration is the mean of the hourly means; both standards use 24-hour averages
    (see :mod:`analytics.aqi`). An hour's PM is the mean of its readings each corrected at its own RH
    (as :func:`last_hour`; the raw day of a station is 288 readings at 5 minutes).

    Returns:
        device id -> ``{ispu, ispu_category, critical_pollutant, us_aqi, us_aqi_category,
        pm25_24h, aqi_hours, aqi_complete}`` (categories are keys such as ``tidak_sehat``;
        ``us_aqi`` and its category are None without PM).
    """
    fields = [schema.FIELD_PM25, schema.FIELD_PM10, "relativeHumidity", *GASES]
    points = window_points(influx, schema.MEASUREMENT_AIR, fields, now - timedelta(hours=24), now)
    if points.empty:
        return {}
    points["pm25"] = correct_frame(points, models, "pm25")
    points["pm10"] = correct_frame(points, models, "pm10")
    points["time"] = points["time"].dt.floor("1h")
    hourly = points.groupby(["device_id", "time"], as_index=False, sort=True)[["pm25", "pm10", *GASES]].mean()
    out: dict[str, dict[str, Any]] = {}
    for device_id, g in hourly.groupby("device_id", sort=True):
        conc = {p: float(g[p].mean()) for p in ("pm25", "pm10", *GASES) if g[p].notna().any()}
        if not conc:
            continue
        ispu = aqi.report("ispu", conc)
        pm = {p: v for p, v in conc.items() if p in ("pm25", "pm10")}
        us = aqi.report("us", pm) if pm else None
        hours = int(g["pm25"].notna().sum()) if "pm25" in conc else len(g)
        out[str(device_id)] = {
            "ispu": ispu.index, "ispu_category": ispu.category.key, "critical_pollutant": ",".join(ispu.critical),
            "us_aqi": us.index if us else None, "us_aqi_category": us.category.key if us else None,
            "pm25_24h": round(conc["pm25"], 2) if "pm25" in conc else None,
            "aqi_hours": hours, "aqi_complete": hours >= MIN_HOURS_24H,
        }
    return out
