"""Time-to-full: a robust fill rate per bin, and the planned collection schedule.

The fill rate is the **Theil-Sen** slope (Theil 1950, Sen 1968, "Estimates of the regression
coefficient based on Kendall's tau", JASA 63(324):1379-1389): the median of the slopes between
every pair of points. With up to 29 % of the points wrong (a bag held in front of the sensor,
a glitch, a partial pickup) the median still follows the bulk, where a least-squares line would
bend. Two estimates:

* **series**: hourly mean fillingLevel since the bin's last pickup, level against hours;
  ``fill_rate_per_h`` is the slope and ``full_at`` where the line crosses the threshold.
* **history**: when the bin has too few points since its pickup (it was just emptied), the
  earlier collection intervals. Their Theil-Sen line (level before each pickup against the
  interval's hours, intercept kept: filling is not linear in time; bins fill by day) predicts the
  level from the hours since the last pickup (:func:`predict_level`;
  tests/analytics/test_forecast_edinburgh.py checks it on 8,000+ real Edinburgh collections
  against naive predictors). The time to full is not read off that line: inverted, a flat or
  noisy line sends the crossing days away. It is the threshold over the median of the
  intervals' fill rates (level before / hours): on the Edinburgh collections
  (``bench/edinburgh_ttf.py``) the time to reach the level seen at pickup was off by a median
  7.7 h for 24-48 h intervals this way, 18.4 h with the inverted line, 9.6 h with the previous
  interval's rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

MIN_SLOPE_PER_H = 1e-4
"""Slopes below this (fraction per hour, 0.24 % a day) are "not filling": no full_at."""


def theil_sen(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Theil-Sen line through ``(x, y)``: slope = median of pairwise slopes, intercept =
    median of ``y - slope * x`` (Sen 1968).

    Args:
        x: abscissae (e.g. hours), at least 2 distinct values.
        y: ordinates, same length.

    Returns:
        ``(slope, intercept)``.

    Raises:
        ValueError: different lengths, fewer than 2 points, or all ``x`` equal.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError("x and y must be 1-d and of equal length")
    if len(xa) < 2:
        raise ValueError("need at least 2 points")
    i, j = np.triu_indices(len(xa), 1)
    dx = xa[j] - xa[i]
    ok = dx != 0
    if not ok.any():
        raise ValueError("all x are equal")
    slope = float(np.median((ya[j] - ya[i])[ok] / dx[ok]))
    return slope, float(np.median(ya - slope * xa))


@dataclass(frozen=True, slots=True)
class FillForecast:
    """A bin's fill forecast.

    Attributes:
        rate_per_h: fill rate, fraction of the bin per hour.
        full_at: when the level reaches the threshold (UTC); ``None`` when not filling.
        method: ``series`` or ``history`` (see the module docstring).
        points: points (series) or intervals (history) the estimate rests on.
        full_at_slow: when the level reaches the threshold if the bin fills slower than
            forecast (``profile`` forecasts: at ``soon_slow_factor`` of the rate; the other
            methods leave it ``None`` and :meth:`slow` stretches their straight line).
    """

    rate_per_h: float
    full_at: datetime | None
    method: str
    points: int
    full_at_slow: datetime | None = None

    def slow(self, now: datetime, factor: float) -> datetime | None:
        """The crossing time at ``factor`` (0..1] of the forecast rate: ``full_at_slow`` for a
        ``profile`` forecast (None: not within its horizon), else the straight line from ``now``
        to ``full_at`` stretched by ``1 / factor`` (None without ``full_at``)."""
        if self.method == "profile" or self.full_at is None:
            return self.full_at_slow
        return now + (self.full_at - now) / factor if self.full_at > now else self.full_at


def from_series(hours: np.ndarray, levels: np.ndarray, level_now: float, now: datetime, threshold: float,
                min_points: int = 3, min_span_h: float = 2.0) -> FillForecast | None:
    """Forecast from the bin's own readings since its last pickup.

    Args:
        hours: time of each point, hours relative to ``now`` (<= 0).
        levels: fillingLevel of each point, 0..1.
        level_now: current level (latest reading), 0..1.
        now: the time ``hours`` are relative to, tz-aware.
        threshold: the bin's full threshold, 0..1.
        min_points, min_span_h: below either there is no estimate.

    Returns:
        The forecast, or ``None`` when the points are too few or span too little time. When
        the bin is already at the threshold ``full_at`` is where the line crossed it (not
        later than ``now``).
    """
    if len(hours) < min_points or float(np.max(hours) - np.min(hours)) < min_span_h:
        return None
    slope, intercept = theil_sen(hours, levels)
    if level_now >= threshold:
        crossed = (threshold - intercept) / slope if slope > MIN_SLOPE_PER_H else 0.0
        return FillForecast(slope, now + timedelta(hours=min(0.0, crossed)), "series", len(hours))
    if slope <= MIN_SLOPE_PER_H:
        return FillForecast(slope, None, "series", len(hours))
    return FillForecast(slope, now + timedelta(hours=(threshold - level_now) / slope), "series", len(hours))


def from_history(durations_h: np.ndarray, levels_before: np.ndarray, since_pickup_h: float, now: datetime,
                 threshold: float, min_intervals: int = 3) -> FillForecast | None:
    """Forecast from earlier collection intervals (see the module docstring).

    Args:
        durations_h: length of each earlier interval between two pickups, hours.
        levels_before: level just before the pickup that ended each interval, 0..1.
        since_pickup_h: hours since the last pickup.
        now: current time, tz-aware.
        threshold: full threshold, 0..1.
        min_intervals: fewer intervals give no estimate.

    Returns:
        The forecast or ``None``; ``rate_per_h`` is the median of ``levels_before / durations_h``
        and ``full_at`` is ``last pickup + threshold / rate`` (see the module docstring).
    """
    ok = durations_h > 0
    if int(ok.sum()) < min_intervals:
        return None
    rate = float(np.median(levels_before[ok] / durations_h[ok]))
    if rate <= MIN_SLOPE_PER_H:
        return FillForecast(rate, None, "history", int(ok.sum()))
    hours_to_full = threshold / rate - since_pickup_h
    return FillForecast(rate, now + timedelta(hours=hours_to_full), "history", int(ok.sum()))


def predict_level(durations_h: np.ndarray, levels_before: np.ndarray, horizon_h: float, cap: float = 1.0) -> float:
    """Level after ``horizon_h`` hours of filling, from earlier intervals' Theil-Sen line.

    Returns:
        ``intercept + slope * horizon_h`` clipped to ``[0, cap]`` (a sensor scale ends at ``cap``).

    Raises:
        ValueError: fewer than 2 intervals or all durations equal.
    """
    slope, intercept = theil_sen(durations_h, levels_before)
    return min(cap, max(0.0, intercept + slope * horizon_h))


ROUND_H = 8.0
"""How long a collection round lasts, hours, for telling which round a moment belongs to: one crew
shift, the 8-hour working day of Indonesia's labour law (UU 13/2003 art. 77, 5-day week)."""


def round_day(now: datetime, times: Sequence[str], weekdays: Sequence[int], tz: str,
              round_h: float = ROUND_H) -> str:
    """The local date (``YYYY-MM-DD`` in ``tz``) of the round ``now`` belongs to: the round under way
    (started less than ``round_h`` hours before ``now``) or else the next one. A route plan made after
    the day's last round is over is for the next round day (23:45 with a 06:00 round: tomorrow).

    Args and errors as :func:`next_collection`.
    """
    start = next_collection(now - timedelta(hours=round_h), times, weekdays, tz)
    return start.astimezone(ZoneInfo(tz)).date().isoformat()


def round_start(day: str, times: Sequence[str], tz: str) -> datetime:
    """When the round of ``day`` (``YYYY-MM-DD`` in ``tz``, a route plan's day) starts: its first
    collection time that day (:func:`next_collection` from the day's local midnight), tz-aware UTC."""
    midnight = datetime.combine(date.fromisoformat(day), time(0), ZoneInfo(tz))
    return next_collection(midnight - timedelta(microseconds=1), times, range(7), tz)


def next_collection(now: datetime, times: Sequence[str], weekdays: Sequence[int], tz: str) -> datetime:
    """The first planned collection strictly after ``now``.

    Args:
        now: tz-aware time.
        times: local ``HH:MM`` times of the rounds (``["06:00"]``).
        weekdays: days with rounds, Monday = 0 (``range(7)`` = daily).
        tz: IANA time zone of ``times`` (``Asia/Makassar`` = WITA, UTC+8, no DST).

    Returns:
        The next round, tz-aware UTC. On a day a local time occurs twice (the repeated hour when
        daylight saving ends) the round is at its first occurrence; on a day it does not occur
        (clocks go forward) it is one hour later on the clock (PEP 495 ``fold=0``).

    Raises:
        ValueError: no times or weekdays, a malformed ``HH:MM``, or an unknown zone.
    """
    if not times or not weekdays:
        raise ValueError("a collection schedule needs at least one time and one weekday")
    zone = ZoneInfo(tz)
    slots = sorted(time.fromisoformat(t) for t in times)
    local = now.astimezone(zone)
    instant = now.astimezone(UTC)
    for day in range(8):
        date = local.date() + timedelta(days=day)
        if date.weekday() not in weekdays:
            continue
        for slot in slots:
            # compared as instants: two datetimes of one zone compare by wall clock, which in the
            # repeated hour of a DST change puts 01:30 (first, summer time) after 01:20 (second)
            at = datetime.combine(date, slot, tzinfo=zone)
            if at.astimezone(UTC) > instant:
                return at.astimezone(now.tzinfo)
    raise ValueError("no collection in the coming week")  # unreachable with a weekday in 0..6
