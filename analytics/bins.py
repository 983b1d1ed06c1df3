"""Per-bin fill forecasts from hourly means (InfluxQL) and the collection history (SQL).

A bin with a day or more of history is forecast from its own fill profile by hour of the week
(:mod:`analytics.fillprofile`), pooled with the bins whose day has the same shape
(:mod:`analytics.fillpool`); a newer bin from a straight line (:mod:`analytics.forecast`).
This module only selects each bin's points: hourly buckets that start at or after the bin's last
pickup (a bucket holding the pickup mixes two fills), without clamped levels (>= 0.999: a full
bin stops rising on the sensor's scale).
A pickup the job has not recorded (it was not running then) still shows as a fall between
hourly means: the series is cut after the last fall of half ``pickup_min_drop`` or more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics.fillpool import learn_profiles
from analytics.fillprofile import HOUR_MS, FillProfile, adapt_scale, forecast_full_at_many
from analytics.forecast import FillForecast, from_history, from_series
from analytics.frames import PerLocalDay, hourly_means, hourly_series, points_hourly_means
from analytics.pickups import History
from analytics.rules.base import Device, DeviceSeries, iso, split_by_device
from lorong.core import schema
from lorong.core.model import to_ms, utc_from_ms
from lorong.storage.influx import InfluxClient

FRESH_H = 12.0
"""Bins emptied within this many hours are read over a shorter window (:func:`hourly_levels`)."""
CLAMPED = 0.999
"""Hourly means at or above this are left out of the slope."""
HALF_HOUR_MS = 1_800_000


HourlyReads = dict[tuple[datetime, tuple[str, ...] | None], pd.DataFrame]
"""InfluxDB's answers to :func:`hourly_levels`' reads of the means before the raw window, by the read's
``(since, devices)`` (:func:`prefetch_hourly`)."""


def _levels_plan(now: datetime, window_h: float, bins: Sequence[str], last_pickup: Mapping[str, datetime],
                 recent_after: datetime | None) -> tuple[datetime, dict[str, datetime], list[str], datetime | None]:
    """``(start, fresh bins' pickups, the other bins, the first hour the raw points hold whole)`` of
    :func:`hourly_levels`."""
    start = now - timedelta(hours=window_h)
    fresh_after = now - timedelta(hours=min(window_h, FRESH_H))
    fresh = {d: p for d in bins if (p := last_pickup.get(d)) is not None and p > fresh_after}
    rest = [d for d in bins if d not in fresh]
    held: datetime | None = None  # the first hour the raw points hold whole
    if recent_after is not None:
        after_ms = to_ms(recent_after)
        held = utc_from_ms(after_ms - after_ms % HOUR_MS + HOUR_MS)
        if held > now:
            held = None
    return start, fresh, rest, held


def _older_reads(start: datetime, fresh: Mapping[str, datetime], rest: Sequence[str],
                 held: datetime | None) -> list[tuple[datetime, tuple[str, ...] | None]]:
    """The ``(since, devices)`` of the means :func:`hourly_levels` reads of InfluxDB up to ``held``: the
    other bins' over the whole window, the fresh ones' (every bin's) from the hour of the oldest pickup."""
    out: list[tuple[datetime, tuple[str, ...] | None]] = []
    if held is None:
        return out
    if rest and start < held:
        out.append((start, None if not fresh else tuple(rest)))
    if fresh:
        since = min(fresh.values()).replace(minute=0, second=0, microsecond=0)
        if since < held:
            out.append((since, None))
    return out


def _older_means(influx: InfluxClient, now: datetime, held: datetime, since: datetime,
                 devices: tuple[str, ...] | None) -> pd.DataFrame:
    """The hourly means of ``devices`` (every bin when None) over ``(since, held)``."""
    return hourly_means(influx, schema.MEASUREMENT_BIN, [schema.FIELD_FILL], since, held, now,
                        devices=None if devices is None else list(devices), end_open=True)


def prefetch_hourly(influx: InfluxClient, now: datetime, window_h: float, bins: Sequence[str],
                    last_pickup: Mapping[str, datetime], recent_after: datetime) -> HourlyReads:
    """The reads of InfluxDB that :func:`hourly_levels` makes with these arguments, made before the raw
    points are in hand (they need only the pickups), so a run can have InfluxDB answer them beside its
    raw read (20,000 bins: 1.5-2.5 s after the raw read before, bench/analytics_job.py).

    :func:`hourly_levels` given the result uses an answer only where its own read has the same
    ``(since, devices)`` (``now``, ``window_h`` and ``recent_after`` the same): the same query, so the same
    means; a read it finds no answer for (a bin's pickup found by the run after the prefetch changed
    ``since`` or the other bins) it makes itself. Each read has a client of its own
    (:meth:`InfluxClient.clone`).
    """
    start, fresh, rest, held = _levels_plan(now, window_h, bins, last_pickup, recent_after)
    keys = _older_reads(start, fresh, rest, held) if held is not None else []
    if held is None or not keys:
        return {}
    def read(since: datetime, devices: tuple[str, ...] | None) -> pd.DataFrame:
        with influx.clone() as own:  # its own connections: the run reads on other threads meanwhile
            return _older_means(own, now, held, since, devices)

    with ThreadPoolExecutor(max_workers=len(keys), thread_name_prefix="analytics-levels") as side:
        got = [side.submit(read, *key) for key in keys]
        return {key: f.result() for key, f in zip(keys, got, strict=True)}


def hourly_levels(influx: InfluxClient, now: datetime, window_h: float, bins: Sequence[str],
                  last_pickup: Mapping[str, datetime], recent: pd.DataFrame | None = None,
                  recent_after: datetime | None = None,
                  prefetched: HourlyReads | None = None) -> dict[str, DeviceSeries]:
    """Hourly mean fillingLevel of the bins over ``(now - window_h, now]``.

    Only the buckets after a bin's last pickup are used, so InfluxDB need not aggregate a whole
    day for a bin emptied this morning: bins emptied within :data:`FRESH_H` hours are read in one
    query that starts at the hour of the oldest of those pickups, the other bins in one query
    over the full window (two short queries instead of one long one, InfluxDB answering them side
    by side; bench/analytics_job.py). The final whole hours come from the ``hourly`` policy
    (:func:`analytics.frames.hourly_means`).

    Args:
        recent, recent_after: the raw points the run already read (:func:`analytics.frames.recent_points`),
            every bin's within ``(recent_after, now]``: the hours they hold whole, from the first one
            starting after ``recent_after``, are averaged from them
            (:func:`analytics.frames.points_hourly_means`, InfluxDB's numbers), and only the older ones
            are read (20,000 bins: the run's two raw reads of those hours went, bench/analytics_job.py).

        prefetched: answers of :func:`prefetch_hourly` (same ``now``, ``window_h``, ``recent_after``), used
            for the reads whose ``(since, devices)`` they hold.

    Returns:
        device id -> series whose ``t_ms`` is each bucket's start.
    """
    start, fresh, rest, held = _levels_plan(now, window_h, bins, last_pickup,
                                            recent_after if recent is not None else None)

    def means(since: datetime, devices: Sequence[str] | None) -> pd.DataFrame:
        """Hourly means over ``(since, now]``: read up to ``held``, averaged from ``recent`` after it."""
        if held is None or recent is None:
            return hourly_means(influx, schema.MEASUREMENT_BIN, [schema.FIELD_FILL], since, now, now, devices=devices)
        if since >= held:
            return points_hourly_means(recent, schema.FIELD_FILL, since, devices)
        key = (since, None if devices is None else tuple(devices))
        old = prefetched[key] if prefetched is not None and key in prefetched else \
            _older_means(influx, now, held, *key)
        new = points_hourly_means(recent, schema.FIELD_FILL, held - timedelta(milliseconds=1), devices)
        parts = [p for p in (old, new) if not p.empty] or [old]
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, ignore_index=True).sort_values(["device_id", "time"], kind="stable") \
            .reset_index(drop=True)

    out: dict[str, DeviceSeries] = {}
    # the two reads are InfluxDB's work on its own threads: the other bins' beside the fresh ones'
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-levels") as beside:
        others = beside.submit(means, start, None if not fresh else rest) if rest else None
        if fresh:
            since = min(fresh.values()).replace(minute=0, second=0, microsecond=0)
            got = split_by_device(means(since, None))
            out.update((d, s) for d, s in got.items() if d in fresh)
        if others is not None:
            out.update(split_by_device(others.result()))
    return out


_PROFILES: PerLocalDay[dict[str, FillProfile]] = PerLocalDay()


def profiles(influx: InfluxClient, now: datetime, bins: Sequence[str], tz: str,
             history_days: float, histories: Mapping[str, History] | None = None) -> dict[str, FillProfile]:
    """Each bin's fill profile from its hourly means over ``history_days`` days before the
    current local midnight (once per process and local day: :class:`PerLocalDay`), read a day at
    a time from the ``hourly`` policy where its means are final (:func:`analytics.frames.hourly_series`;
    the bins in :func:`analytics.frames.bucket_means_chunked`'s order), and from the levels after
    its pickups before that midnight in ``histories`` (:func:`analytics.fillprofile.pickup_increments`).

    Every bin's hour-of-day rates are pooled with those of the bins whose day has the same
    shape (:func:`analytics.fillpool.learn_profiles`).

    Returns:
        device id -> profile, for the bins with enough history (see
        :func:`analytics.fillprofile.learn_profile`).
    """
    def learn(midnight: datetime) -> dict[str, FillProfile]:
        series = hourly_series(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL,
                               midnight - timedelta(days=history_days), midnight, now)
        after = {d: h.after_pickups(midnight) for d, h in (histories or {}).items()}
        return learn_profiles(series, tz, pickups=after)

    got = _PROFILES.get(influx, now, tz, history_days, learn)
    wanted = set(bins)
    return {d: p for d, p in got.items() if d in wanted}


def median_newest(levels: np.ndarray) -> float:
    """``np.median`` of the newest three of ``levels`` (at least one, no NaN), to the last bit (the
    middle value, or the mean of two), without numpy's per-call cost: it runs for every bin."""
    v = sorted(levels[-3:].tolist())
    return float(v[1]) if len(v) == 3 else (v[0] + v[1]) / 2.0 if len(v) == 2 else float(v[0])


def since_last_fall(levels: np.ndarray, min_drop: float) -> int:
    """Index of the first point after the last fall of at least ``min_drop / 2`` between
    consecutive values (0 when there is none)."""
    falls = np.flatnonzero(np.diff(levels) <= -min_drop / 2.0)
    return int(falls[-1]) + 1 if len(falls) else 0


def forecasts(bins: Iterable[Device], hourly: Mapping[str, DeviceSeries], recent: Mapping[str, DeviceSeries],
              last_pickup: Mapping[str, datetime], histories: Mapping[str, History],
              now: datetime, min_drop: float = 0.3,
              fill_profiles: Mapping[str, FillProfile] | None = None,
              slow_factor: float = 1.0) -> dict[str, FillForecast]:
    """A forecast for every bin that has enough data: its fill profile first (method
    ``profile``), then a straight line through its readings since the pickup (``series``), then
    its earlier collection intervals (``history``).

    Args:
        bins: the bins.
        hourly: hourly means per bin (:func:`hourly_levels`).
        recent: raw recent points per bin; the current level is the median of the newest three
            since the last pickup (none since: no forecast until the bin reports again).
        last_pickup: each bin's last pickup (UTC).
        histories: each bin's collection history.
        now: the run's time.
        min_drop: ``pickup_min_drop`` (see the module docstring).
        fill_profiles: each bin's learned profile (:func:`profiles`).
        slow_factor: each forecast's ``full_at_slow`` is its crossing at this fraction of the
            rate (``soon_slow_factor``; a profile walked at the slower rate, a line stretched).
    """
    now_ms = to_ms(now)
    out: dict[str, FillForecast | None] = {}
    walks: list[tuple[str, FillProfile, float]] = []  # the profile forecasts' bins, walked at once
    asks: list[tuple[FillProfile, float, float, float]] = []
    for dev in bins:
        pickup = last_pickup.get(dev.device_id)
        t_raw, raw = (recent[dev.device_id].values(schema.FIELD_FILL) if dev.device_id in recent
                      else (np.zeros(0, dtype=np.int64), np.zeros(0)))
        if pickup is not None:
            raw = raw[t_raw >= to_ms(pickup)]  # a level from before the bin was emptied is not its level now
        level_now = median_newest(raw) if len(raw) else None
        fc = None
        series = hourly.get(dev.device_id)
        if series is not None and level_now is not None:
            t, lv = series.values(schema.FIELD_FILL)
            if pickup is not None:
                t, lv = t[t >= to_ms(pickup)], lv[t >= to_ms(pickup)]
            cut = since_last_fall(lv, min_drop)
            t, lv = t[cut:], lv[cut:]
            keep = lv < CLAMPED
            prof = (fill_profiles or {}).get(dev.device_id)
            if prof is not None:
                since = utc_from_ms(int(t[0]) + HALF_HOUR_MS) if len(t) else None
                scale = adapt_scale(prof, since, float(lv[0]) if len(lv) else None, now, level_now)
                walks.append((dev.device_id, prof, scale))
                asks += [(prof, level_now, dev.full_threshold, scale),
                         (prof, level_now, dev.full_threshold, scale * slow_factor)]
                out[dev.device_id] = None  # its place in the order; the walks are done after the loop
                continue
            hours = (np.minimum(t[keep] + HALF_HOUR_MS, now_ms) - now_ms) / 3.6e6
            fc = from_series(hours, lv[keep], level_now, now, dev.full_threshold)
        hist = histories.get(dev.device_id)
        if fc is None and hist is not None and pickup is not None:
            durations, before = hist.intervals()
            fc = from_history(durations, before, (now - pickup).total_seconds() / 3600.0, now, dev.full_threshold)
        if fc is not None:
            out[dev.device_id] = replace(fc, full_at_slow=fc.slow(now, slow_factor))
    crossed = forecast_full_at_many(asks, now)
    for k, (device_id, prof, scale) in enumerate(walks):
        out[device_id] = FillForecast(prof.rate_at(now) * scale, crossed[2 * k], "profile", int(prof.days),
                                      crossed[2 * k + 1])
    return {d: fc for d, fc in out.items() if fc is not None}


def from_derived(derived: Mapping[str, Any]) -> FillForecast | None:
    """The forecast a previous run stored in ``device_latest.derived`` (None if it stored none)."""
    rate, method = derived.get("fill_rate_per_h"), derived.get("fill_rate_method")
    if not isinstance(rate, int | float) or not isinstance(method, str):
        return None
    full_at, slow = derived.get("full_at"), derived.get("full_at_slow")
    return FillForecast(float(rate), datetime.fromisoformat(full_at) if isinstance(full_at, str) else None, method, 0,
                        datetime.fromisoformat(slow) if isinstance(slow, str) else None)


def bin_derived(fc: FillForecast | None, last_pickup: datetime | None) -> dict[str, Any]:
    """``device_latest.derived`` keys of a bin: fill_rate_per_h, full_at, full_at_slow,
    last_emptying, fill_rate_method (None where unknown)."""
    return {
        "fill_rate_per_h": round(fc.rate_per_h, 5) if fc else None,
        "full_at": iso(fc.full_at) if fc else None,
        "full_at_slow": iso(fc.full_at_slow) if fc else None,
        "fill_rate_method": fc.method if fc else None,
        "last_emptying": iso(last_pickup),
    }
