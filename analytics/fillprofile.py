"""Each bin's fill by hour of the week, learned from its own history, and when its truck comes.

Bins do not fill in straight lines: a pasar's bin takes most of its waste before noon, an office's
on weekdays from 08:00 to 17:00, and nearly nothing arrives at night. A straight line through the
day's readings sends the daytime rate through the night and calls a bin "full at 03:00" that will
be full at 09:00. So the forecast here walks forward hour by hour with the rate the bin showed at
that hour on earlier days.

**Profile** (:func:`learn_profile`). From hourly mean fill levels (InfluxQL ``mean`` per hour)
of up to ``forecast_history_days`` days before the current local day:

1. the increment of each hour is the difference of two consecutive hourly means; increments of
   clamped hours (>= 0.999, a full bin stops rising on the sensor's scale), falls (< -0.02: a
   pickup; the hourly mean of ultrasonic readings with +-10 mm jitter moves by well under 1 %)
   and the rise right after a fall (the hourly mean of the pickup's hour mixes two fills) are
   left out (the hours never seen filling take their neighbours' rate);
2. the rate of an hour of the day is the mean of that hour's increments over the days: the fill
   to come is the sum of the coming hours' expected fill, and waste comes in bags, so most
   hours hold none, one or two and their median reads the hour low (on the simulated tuning
   city a lorong bin's profile of medians summed to 0.79 of its true daily fill, of means 0.92;
   the time to full 6-12 h ahead went from 1.63 to 1.45 h). A bag held over the sensor adds
   one high hourly mean once (its fall back is left out as a fall), a few hundredths of one
   day's fill;
3. with two or more increments at the same hour of the week (two weeks of history) the rate of
   that hour of the week is their mean instead: market days and weekends come from the
   bin's own history; with less, the hour-of-day rate is scaled by the weekday's share of the
   fill when that weekday was seen (a weekday factor), else by that of the seen days of its kind
   (working days or the weekend), else used as it is;
4. the increment of two hourly means is the fill between their middles (from hh:30 to hh:30 the
   next hour), filed under the later bucket's hour: an hour's own fill is half its increment and
   half the next hour's. Filed as they are, every profile ran half an hour late (a bin filling from
   08:00 to 10:00 had its fill centred at 09:30);
5. the hours around each pickup, which step 1 leaves out, are measured from the pickup itself
   when it is known (:func:`pickup_increments`): from the level the sensor read right after the
   fall to the mean of the next whole hour. On a fixed route the truck reaches a bin at the same
   time every day, so without this the same hours of the day are never seen, and on a morning
   round those are the morning's busiest: filled in from the night before and the hours after,
   the simulated tuning cities' profiles held 0.38 of the day's fill in 06:00-12:00 where the
   truth held 0.43, and their forecasts ran late.

Only history before the current local midnight is used, so a profile does not change during
the day and a run repeated at the same time gives the same forecast.

**Forecast** (:func:`forecast_full_at`): from the current level, add each coming hour's rate
until the threshold is reached, with the profile scaled by how fast the bin really filled since
its last pickup compared with what the profile expected over the same hours (a heavy market day
fills faster than an average one), that cycle's fill weighed against the days of fill behind the
profile (:func:`adapt_scale`, bounded to 0.67-1.5).

**Next pickup** (:func:`expected_pickup`): the collection round starts at the configured time,
but the trucks reach bins one after another over hours. Each bin's own pickups tell at what time
of day its truck usually comes (the median of its recent pickup times of day): the next pickup
is that time on the next collection day, or today while today's truck has not come yet. A bin
never emptied yet is expected when the city's round usually comes (:func:`typical_pickup`: the
median of the bins' usual times), and now while today's round may still reach it (until the time
it usually reaches its last bin, :func:`round_end`, and :data:`LATE_TRUCK`); before any bin has a
pickup, at the configured round start, and now while a round started less than a shift ago.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from analytics.forecast import ROUND_H, next_collection

HOURS_PER_WEEK = 168
HOUR_MS = 3_600_000
"""One hour in epoch milliseconds (the hourly means' bucket, :mod:`analytics.frames`)."""
CLAMPED = 0.999
"""Hourly means at or above this are on the sensor's ceiling: no increment from them."""
FALL = -0.02
"""An hourly increment below this is a pickup (or part of one), not filling."""
MAX_HORIZON_H = 72
"""A forecast looks at most this far ahead; a bin that will not be full by then has no full_at."""
LATE_TRUCK = timedelta(hours=1)
"""A bin not emptied this long after its usual pickup time was skipped today (its truck comes on the
next collection day)."""
SCALE_BOUNDS = (0.67, 1.5)


@dataclass(frozen=True, slots=True)
class FillProfile:
    """A bin's learned fill rate by hour of the week.

    Attributes:
        rate: 168 floats, fraction of the bin per hour, index ``weekday * 24 + hour`` in local
            time (Monday = 0), all >= 0.
        days: days of history it rests on.
        tz: IANA zone of the hours.
    """

    rate: np.ndarray
    days: float
    tz: str

    def rate_at(self, ts: datetime) -> float:
        """Fill rate (fraction per hour) at a tz-aware time."""
        local = ts.astimezone(ZoneInfo(self.tz))
        return float(self.rate[local.weekday() * 24 + local.hour])

    def daily_fill(self) -> float:
        """Mean fill per day over the week (fraction of the bin)."""
        return float(self.rate.sum()) / 7.0

    def fill_between(self, start: datetime, end: datetime) -> float:
        """Fill (fraction of the bin) the profile expects between two times.

        Each piece between ``start``, the UTC hour boundaries and ``end`` counts at the rate of
        its first instant, added in time order: the same sum, to the last bit, as walking the
        hours one by one (:func:`_fill_between_walk`), in a few array operations.
        """
        if start >= end:
            return 0.0
        pieces = _hour_pieces(self.tz, _epoch_us(start), _epoch_us(end)) \
            if start.utcoffset() == ZERO and end.utcoffset() == ZERO else None
        if pieces is None:
            return _fill_between_walk(self, start, end)
        slots, secs = pieces
        terms = self.rate[slots] * secs / 3600.0
        return float(np.cumsum(terms)[-1])


ZERO = timedelta(0)
HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday (Monday = 0)."""


def _epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch of a tz-aware time (exact)."""
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _fixed_offset(tz: str, start: datetime, end: datetime) -> int | None:
    """The zone's UTC offset in seconds when it is the same at ``start``, ``end`` and every UTC
    midnight between them (no daylight saving change inside: two changes are never less than a
    day apart), else None."""
    first, last = _epoch_us(start) // 10**6, _epoch_us(end) // 10**6
    days = range(first - first % 86400 + 86400, last, 86400)
    offsets = {_offset_at(tz, s) for s in (first, last, *days)}
    return offsets.pop() if len(offsets) == 1 else None


@lru_cache(maxsize=1024)
def _hour_pieces(tz: str, s_us: int, e_us: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The pieces of :meth:`FillProfile.fill_between` from ``s_us`` to ``e_us`` (epoch microseconds,
    ``s_us < e_us``): each piece's hour-of-week slot in ``tz`` and its length in seconds, or None when
    the zone's offset changes in between. The same for every bin of a run emptied in the same hour,
    so kept (read-only arrays)."""
    off = _fixed_offset(tz, datetime.fromtimestamp(s_us // 10**6, UTC), datetime.fromtimestamp(e_us // 10**6, UTC))
    if off is None:
        return None
    edges = np.r_[s_us, np.arange((s_us // HOUR_US + 1) * HOUR_US, e_us, HOUR_US, dtype=np.int64), e_us]
    secs = np.diff(edges) / 10**6
    slots = _slots_us(edges[:-1], off)
    slots.flags.writeable = False
    secs.flags.writeable = False
    return slots, secs


@lru_cache(maxsize=4096)
def _offset_at(tz: str, epoch_s: int) -> int:
    """UTC offset (seconds) of ``tz`` at an epoch second."""
    off = datetime.fromtimestamp(epoch_s, ZoneInfo(tz)).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _slots_us(us: np.ndarray, offset_s: int) -> np.ndarray:
    """Hour-of-week slot (``weekday * 24 + hour``, local time at a fixed ``offset_s``) of epoch
    microseconds."""
    local_h = (us // 10**6 + offset_s) // 3600
    return np.asarray(((local_h // 24 + _EPOCH_WEEKDAY) % 7) * 24 + local_h % 24, dtype=np.int64)


def _fill_between_walk(profile: FillProfile, start: datetime, end: datetime) -> float:
    """:meth:`FillProfile.fill_between` hour by hour (any zone, any offset change)."""
    total, t = 0.0, start
    while t < end:
        nxt = min(end, (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
        total += profile.rate_at(t) * (nxt - t).total_seconds() / 3600.0
        t = nxt
    return total


def hourly_increments(t_ms: np.ndarray, levels: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filling increments of consecutive hourly means (step 1 of the module docstring).

    Args:
        t_ms: bucket start of each hourly mean, epoch ms, ascending.
        levels: hourly mean fillingLevel, 0..1.
        tz: IANA zone of the hours.

    Returns:
        ``(hour_of_week, local_day_ordinal, increment)`` of each kept increment, the hour of the
        week (Monday 00 = 0) and day being those of the later bucket; increments >= 0 (fractions of
        the bin per hour).
    """
    if len(t_ms) < 2:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0)
    dt_h = np.diff(t_ms) / 3.6e6
    inc = np.diff(levels)
    prev_inc = np.r_[0.0, inc[:-1]]
    prev_gap = np.r_[1.0, dt_h[:-1]]
    ok = ((dt_h == 1.0) & (levels[1:] < CLAMPED) & (levels[:-1] < CLAMPED) & (inc >= FALL)
          & ~((prev_inc < FALL) & (prev_gap == 1.0)))
    when_ms = np.asarray(t_ms[1:][ok], dtype=np.int64)
    vals = np.maximum(inc[ok], 0.0)
    if not len(when_ms):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), vals
    return (*_hours_of(when_ms, tz), vals)


def pickup_increments(t_ms: np.ndarray, levels: np.ndarray, tz: str,
                      pickups: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fill right after each pickup, as increments of the hour step 1 cannot see (step 5 of
    the module docstring).

    A pickup at ``tp`` in the hour starting ``P`` mixes two fills in that hour's mean, so the
    increments filed under ``P`` and ``P + 1 h`` are left out of :func:`hourly_increments`. The
    fill from ``tp`` to the middle of the next hour is measured: the next hour's mean minus the
    level read right after the fall, over ``P + 1 h 30 - tp`` (0.5 to 1.5 h). That rate is filed
    under ``P + 1 h``, whose increment spans ``P + 0 h 30`` to ``P + 1 h 30``: the measured span
    covers at least half of it. ``P``'s own span ends at ``P + 0 h 30`` and is mostly before the
    pickup, so ``P`` stays unseen (:func:`fill_gaps` takes its neighbours', now including this one).

    Args:
        t_ms: bucket start of each hourly mean, epoch ms, ascending.
        levels: hourly mean fillingLevel, 0..1.
        tz: IANA zone of the hours.
        pickups: ``(epoch ms of the first reading after the fall, level after)`` of the bin's
            pickups (:class:`analytics.pickups.Pickup`); those whose next hour has no mean, or a
            clamped one (>= :data:`CLAMPED`), are skipped.

    Returns:
        ``(hour_of_week, local_day_ordinal, increment)`` as :func:`hourly_increments` returns them.
    """
    where = {int(t): i for i, t in enumerate(np.asarray(t_ms).tolist())}
    when: list[int] = []
    vals: list[float] = []
    for tp, after in pickups:
        start = (int(tp) // HOUR_MS) * HOUR_MS
        i = where.get(start + HOUR_MS)
        if i is None or levels[i] >= CLAMPED:
            continue
        when.append(start + HOUR_MS)
        vals.append(max(0.0, float(levels[i]) - after) / ((start + 1.5 * HOUR_MS - int(tp)) / HOUR_MS))
    if not when:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return (*_hours_of(np.asarray(when, dtype=np.int64), tz), np.asarray(vals))


def _hours_of(when_ms: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """``(hour_of_week, local_day_ordinal)`` of epoch-ms times in ``tz`` (Monday 00 = 0)."""
    off = _fixed_offset(tz, datetime.fromtimestamp(when_ms[0] / 1000.0, UTC),
                        datetime.fromtimestamp(when_ms[-1] / 1000.0, UTC))
    if off is None:  # an offset change inside the history: each time on its own
        zone = ZoneInfo(tz)
        when = [datetime.fromtimestamp(ms / 1000.0, zone) for ms in when_ms]
        return (np.array([w.weekday() * 24 + w.hour for w in when], dtype=np.int64),
                np.array([w.date().toordinal() for w in when], dtype=np.int64))
    return _slots_us(when_ms * 1000, off), (when_ms // 1000 + off) // 86400


def increments(t_ms: np.ndarray, levels: np.ndarray, tz: str,
               pickups: Sequence[tuple[int, float]] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hourly_increments` and, for ``pickups``, :func:`pickup_increments` together."""
    how, day, vals = hourly_increments(t_ms, levels, tz)
    if not pickups:
        return how, day, vals
    p_how, p_day, p_vals = pickup_increments(t_ms, levels, tz, pickups)
    return np.r_[how, p_how], np.r_[day, p_day], np.r_[vals, p_vals]


def learn_profile(t_ms: np.ndarray, levels: np.ndarray, tz: str, min_days: float = 1.0,
                  pickups: Sequence[tuple[int, float]] = ()) -> FillProfile | None:
    """Learn a profile from hourly means (see the module docstring).

    Args:
        t_ms: bucket start of each hourly mean, epoch ms, ascending.
        levels: hourly mean fillingLevel, 0..1.
        tz: IANA zone whose hours and weekdays the profile uses.
        min_days: fewer days of valid increments give no profile.
        pickups: the bin's pickups in the same span (:func:`pickup_increments`).

    Returns:
        The profile, or None when the history is too short.
    """
    how, day, vals = increments(t_ms, levels, tz, pickups)
    if len(vals) < 24 * min_days * 0.5:
        return None
    n_days = len(np.unique(day))
    if n_days < min_days:
        return None
    hod = how % 24
    by_hour, _ = means_by_key(hod, vals, 24)
    if np.isnan(by_hour).all():
        return None
    return week_profile(fill_gaps(by_hour), how, vals, float(n_days), tz)


WEEKEND = (5, 6)
"""Saturday and Sunday (Monday = 0): the days offices and most schools are closed (Indonesia's five
working days a week for government offices, Keppres 68/1995), so a bin beside them fills another way."""


def week_profile(by_hour: np.ndarray, how: np.ndarray, vals: np.ndarray, days: float, tz: str) -> FillProfile:
    """The 168-hour profile from 24 hour-of-day rates (steps 2-3 of the module docstring): an hour
    of the week seen twice or more takes the mean of its own increments, the others the
    hour-of-day rate times the weekday factor: each weekday's mean increment over all days' when
    half a day's hours or more were seen on it; for a weekday not seen yet, that of the seen days
    of its kind taken together (working days, or :data:`WEEKEND`), else 1. (An office bin seen Thursday
    to Sunday took the four days' mean on Monday, 0.6 of its working day, and its Monday crossing
    was forecast a median 16 h late.)"""
    overall = float(vals.mean()) if len(vals) else 0.0
    wd = how // 24
    factor = np.ones(7)
    seen = np.zeros(7, dtype=bool)
    if overall > 0:
        for d in range(7):
            sel = wd == d
            if sel.sum() >= 12:  # half a day's hours seen on that weekday
                factor[d] = float(vals[sel].mean()) / overall
                seen[d] = True
    weekend = np.isin(np.arange(7), WEEKEND)
    for d in range(7):
        kind = seen & (weekend == weekend[d])
        if not seen[d] and kind.any():  # the seen days of its kind, their increments taken together
            factor[d] = float(vals[np.isin(wd, np.flatnonzero(kind))].mean()) / overall
    by_slot, count = means_by_key(how, vals, HOURS_PER_WEEK)
    slot = np.arange(HOURS_PER_WEEK)
    rate = np.where(count >= 2, by_slot, by_hour[slot % 24] * factor[slot // 24])
    # an increment filed under hour h (its later bucket) is the fill from h - 1 h 30 to h h 30, the
    # middles of the two hourly means: half of it came in the hour before h, half in hour h's first
    # half. Hour h's own fill is half of its increment and half of the next one's (step 4)
    rate = 0.5 * (rate + np.roll(rate, -1))
    return FillProfile(np.maximum(rate, 0.0), days, tz)


def means_by_key(key: np.ndarray, vals: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``vals`` for each key ``0 .. n_keys - 1`` (NaN where none) and the count of each.

    Args:
        key: int array, values in ``0 .. n_keys - 1``.
        vals: float array of the same length.
        n_keys: number of keys.

    Returns:
        ``(means, counts)``, each of length ``n_keys``.
    """
    n = np.bincount(key, minlength=n_keys)[:n_keys]
    sums = np.bincount(key, weights=vals, minlength=n_keys)[:n_keys]
    out = np.full(n_keys, np.nan)
    has = n > 0
    out[has] = sums[has] / n[has]
    return out, n


def fill_gaps(by_hour: np.ndarray) -> np.ndarray:
    """Hours of the day never seen filling (the hour of the bin's pickup and the one after, every
    day on a fixed route) get the linear interpolation of their neighbours around the clock."""
    seen = np.flatnonzero(~np.isnan(by_hour))
    if len(seen) == 24:
        return by_hour
    x = np.r_[seen - 24, seen, seen + 24]
    return np.asarray(np.interp(np.arange(24), x, np.tile(by_hour[seen], 3)))


def adapt_scale(profile: FillProfile, since: datetime | None, level_then: float | None, now: datetime,
                level_now: float) -> float:
    """How much faster (> 1) or slower than its profile the bin filled since ``since``.

    Args:
        profile: the bin's profile.
        since: start of the comparison (the last pickup), tz-aware; None gives 1.0.
        level_then: the level just after it (0..1).
        now: the run's time.
        level_now: the current level.

    Returns:
        ``1 + w * (observed / expected - 1)`` with ``w = expected / (expected + history)``, bounded
        to :data:`SCALE_BOUNDS`: ``history`` is the fill the profile rests on (its days times its
        mean daily fill). This is the credibility estimate (Buhlmann 1967, "Experience rating and
        credibility", ASTIN Bulletin 4(3):199-207), the posterior mean of a Poisson rate multiplier
        under a gamma prior of mean 1 worth ``history`` of fill (``(history + observed) /
        (history + expected)``; Gelman et al., *Bayesian Data Analysis*, 3rd ed., 2.6): waste comes
        in bags, so a few hours since a pickup weigh what they hold against the days behind the
        profile. (It replaced a weight reaching 1 once the profile expected 0.2 of the bin: on the
        simulated tuning city, given each bin's true profile, that scale alone moved the time to
        full 6-12 h ahead off by 1.9 h instead of 1.5 h.)
    """
    if since is None or level_then is None or since >= now:
        return 1.0
    expected = profile.fill_between(max(since, now - timedelta(hours=MAX_HORIZON_H)), now)
    if expected <= 1e-6:
        return 1.0
    ratio = max(0.0, level_now - level_then) / expected
    weight = expected / (expected + profile.days * profile.daily_fill())
    lo, hi = SCALE_BOUNDS
    return min(hi, max(lo, 1.0 + weight * (ratio - 1.0)))


def forecast_full_at(profile: FillProfile, level_now: float, now: datetime, threshold: float,
                     scale: float = 1.0) -> datetime | None:
    """When the level reaches ``threshold`` walking the profile forward from ``now``.

    Returns:
        The crossing time (``now`` when already at or above), or None when it is not reached
        within :data:`MAX_HORIZON_H` hours.
    """
    if level_now >= threshold:
        return now
    starts, step_h, slots = _walk(now, profile.tz)
    rate = profile.rate[slots] * scale
    return _crossings(rate[None, :], np.array([level_now]), np.array([threshold]), step_h, starts)[0]


def forecast_full_at_many(asks: Sequence[tuple[FillProfile, float, float, float]], now: datetime,
                          rows: int = 2048) -> list[datetime | None]:
    """:func:`forecast_full_at` of each ``(profile, level_now, threshold, scale)`` in ``asks``, in order,
    the walks of up to ``rows`` bins of one zone at once in one array: the same additions in the same
    order (``cumsum`` along a row adds its steps one by one), so the same times to the microsecond
    (``tests/analytics/test_fillprofile_fast.py``), in a fraction of the per-call cost of 20,000 bins
    times two walks (bench/analytics_job.py).
    """
    out: list[datetime | None] = [None] * len(asks)
    todo: dict[str, list[int]] = {}
    for i, (profile, level_now, threshold, scale) in enumerate(asks):
        if level_now >= threshold:
            out[i] = now
        elif profile.rate.dtype != np.float64:  # the array's arithmetic would not be the profile's own
            out[i] = forecast_full_at(profile, level_now, now, threshold, scale)
        else:
            todo.setdefault(profile.tz, []).append(i)
    for tz, ids in todo.items():
        starts, step_h, slots = _walk(now, tz)
        for a in range(0, len(ids), rows):
            part = ids[a:a + rows]
            rate = np.stack([asks[i][0].rate for i in part])[:, slots] * np.array([asks[i][3] for i in part])[:, None]
            found = _crossings(rate, np.array([asks[i][1] for i in part]), np.array([asks[i][2] for i in part]),
                               step_h, starts)
            for i, at in zip(part, found, strict=True):
                out[i] = at
    return out


def _crossings(rate: np.ndarray, level_now: np.ndarray, threshold: np.ndarray, step_h: np.ndarray,
               starts: Sequence[datetime]) -> list[datetime | None]:
    """The walk of :func:`forecast_full_at` for ``n`` bins at once: ``rate`` (n, steps) fill per hour
    of each step, ``level_now`` and ``threshold`` (n,) levels 0..1, ``step_h`` and ``starts`` the
    steps of :func:`_walk`. Each row's levels are added step by step in time order (``cumsum`` along
    the row), so a bin walked alone and among others gets the same time to the microsecond.

    Returns:
        Per row, the time the level reaches its threshold (linear within the step), or None.
    """
    level = np.empty((rate.shape[0], rate.shape[1] + 1))  # level[:, k]: before step k
    level[:, 0] = level_now
    np.multiply(rate, step_h, out=level[:, 1:])
    np.cumsum(level, axis=1, out=level)  # in place: the same additions as a new array's
    hit = (rate > 0) & (level[:, 1:] >= threshold[:, None])
    first = hit.argmax(axis=1)
    out: list[datetime | None] = []
    for row, k in enumerate(first.tolist()):
        out.append(starts[k] + timedelta(hours=float((threshold[row] - level[row, k]) / rate[row, k]))
                   if hit[row, k] else None)
    return out


@lru_cache(maxsize=16)
def _walk(now: datetime, tz: str) -> tuple[tuple[datetime, ...], np.ndarray, np.ndarray]:
    """The steps of :func:`forecast_full_at` from ``now`` (the same for every bin of a run): each
    step's start (``now``, then each hour boundary), its length in hours and its hour-of-week slot
    in ``tz``, up to :data:`MAX_HORIZON_H` hours ahead."""
    zone = ZoneInfo(tz)
    starts, hours, slots = [], [], []
    t, end = now, now + timedelta(hours=MAX_HORIZON_H)
    while t < end:
        nxt = min(end, (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
        local = t.astimezone(zone)
        starts.append(t)
        hours.append((nxt - t).total_seconds() / 3600.0)
        slots.append(local.weekday() * 24 + local.hour)
        t = nxt
    return tuple(starts), np.array(hours), np.array(slots, dtype=np.int64)


def round_end(histories: Iterable[Sequence[datetime]], tz: str, starts: Sequence[str] = ()) -> time | None:
    """The latest of the bins' usual pickup times (:func:`usual_pickup_time`, ``starts`` the configured
    round starts): when the day's round usually reaches its last bin (None when no bin has a pickup)."""
    usual = [u for u in (usual_pickup_time(p[-7:], tz, starts) for p in histories) if u is not None]
    return max(usual) if usual else None


def typical_pickup(histories: Iterable[Sequence[datetime]], tz: str, starts: Sequence[str] = ()) -> time | None:
    """When the city's round usually comes: the median of the bins' usual pickup times
    (:func:`usual_pickup_time`, ``starts`` the configured round starts; the lower middle of an even
    count), None when no bin has a pickup. The point estimate for a bin whose own time is not known
    yet: the round reaches it somewhere between its start and :func:`round_end`, and at the
    median as often before as after (the usual time of a bin is its pickups' median too)."""
    usual = sorted(u for u in (usual_pickup_time(p[-7:], tz, starts) for p in histories) if u is not None)
    return usual[(len(usual) - 1) // 2] if usual else None


def usual_pickup_time(pickups: Sequence[datetime], tz: str, starts: Sequence[str] = ()) -> time | None:
    """The local time of day a bin's truck usually comes (None without a pickup): the median of its
    pickups within :data:`LATE_TRUCK` of the time of day most of them are near.

    A truck reaches a bin at about the same time each round; a pickup at another hour (a crew's
    Emptied pressed in the evening, an extra trip) is not when the next truck comes. The plain median
    of a 06:35 round and a 22:29 press was 14:32, when no truck comes, and a bin emptied at 22:29
    with a forecast crossing at 08:08 got a ``bin_full_soon`` warning at 3 % full. Times of day are
    taken round the clock (23:50 and 00:10 are 20 minutes apart). When two times of day have as many
    pickups near them, the one a configured round (``starts``, "HH:MM", ``collection_times``)
    reaches first after it starts wins, else the earlier.

    Kept per pickups, zone and starts (:func:`_usual_pickup_time`): a run asks it twice per bin
    (:func:`round_end`, :func:`expected_pickup`) and the next run again of the same pickups; 20,000 bins'
    seven pickups each took 1.1-1.3 s a time on the shared 2-core bench machine (bench/analytics_job.py).
    """
    if not pickups:
        return None
    return _usual_pickup_time(tuple(pickups), tz, tuple(starts))


DAY_MIN = 1440
"""Minutes in a day (times of day are minutes since local midnight)."""


def _apart(a: int, b: int) -> int:
    """Minutes between two minutes of the day, round the clock."""
    d = abs(a - b) % DAY_MIN
    return min(d, DAY_MIN - d)


@lru_cache(maxsize=65_536)
def _usual_pickup_time(pickups: tuple[datetime, ...], tz: str, starts: tuple[str, ...] = ()) -> time:
    """:func:`usual_pickup_time` of a non-empty tuple (aware datetimes: equal ones are the same instant,
    so the same local time)."""
    zone = ZoneInfo(tz)
    minutes = sorted(local.hour * 60 + local.minute for local in (p.astimezone(zone) for p in pickups))
    window = int(LATE_TRUCK.total_seconds() // 60)
    near = [sum(_apart(a, b) <= window for b in minutes) for a in minutes]
    most = max(near)
    first = [o.hour * 60 + o.minute for o in (time.fromisoformat(t) for t in starts)]

    def after_round_start(a: int) -> tuple[int, int]:
        return min(((a - f) % DAY_MIN for f in first), default=0), a

    centre = min((a for a, k in zip(minutes, near, strict=True) if k == most), key=after_round_start)
    # the pickups near it, unwrapped round the centre (a window across midnight stays in order)
    around = sorted(centre + (b - centre + DAY_MIN // 2) % DAY_MIN - DAY_MIN // 2 for b in minutes
                    if _apart(b, centre) <= window)
    n = len(around)
    m = around[n // 2] if n % 2 else (around[n // 2 - 1] + around[n // 2]) // 2  # the median, whole minutes
    m %= DAY_MIN
    return time(m // 60, m % 60)


def expected_pickup(now: datetime, pickups: Sequence[datetime], times: Sequence[str], weekdays: Sequence[int],
                    tz: str, round_end: time | None = None, typical: time | None = None) -> datetime:
    """When the bin's truck next comes (see the module docstring).

    Args:
        now: the run's time, tz-aware.
        pickups: the bin's recent pickups (UTC), ascending; the last 7 set its usual time.
        times, weekdays, tz: the configured rounds (``collection_times``, Monday = 0, IANA zone);
            a bin with no pickup yet is expected at the next one
            (:func:`analytics.forecast.next_collection`).
        round_end: the latest usual pickup time of the city's bins (:func:`round_end`): while a
            round that started today has not reached it, or passed it less than
            :data:`LATE_TRUCK` ago (a truck late there as it may be at a bin with a usual time),
            a bin with no pickup yet may still be on it, and is expected then or now (not at
            tomorrow's start).
        typical: when the city's round usually comes (:func:`typical_pickup`). A bin with no
            pickup yet is expected then, as a bin is at its usual time, on the next round day, or
            today while the round may still reach it (until ``round_end`` and
            :data:`LATE_TRUCK`; now once ``typical`` has passed). Without it such a bin is
            expected at ``round_end`` while the round is out, else at the configured start; with
            neither (no bin of the city emptied yet, as on the first round after the install) it
            is expected now while a round started less than
            :data:`analytics.forecast.ROUND_H` (a shift) ago, else at the next round's start.

    Returns:
        The expected next pickup, tz-aware UTC, not before ``now``.
    """
    usual = usual_pickup_time(pickups[-7:], tz, times)
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    last: date | None = pickups[-1].astimezone(zone).date() if pickups else None
    until = usual  # today's truck passed the bin by LATE_TRUCK after this
    if usual is None and typical is not None:
        usual, until = typical, max(typical, round_end or typical)
    if usual is None or until is None:
        started = any(time.fromisoformat(t) <= local.time() for t in times)
        if round_end is not None and local.weekday() in weekdays and started:
            end = datetime.combine(local.date(), round_end, tzinfo=zone)
            if local <= end + LATE_TRUCK:
                return max(end, local).astimezone(now.tzinfo)
        elif round_end is None and next_collection(now - timedelta(hours=ROUND_H), times, weekdays, tz) <= now:
            return now  # no bin emptied yet: a round that started less than a shift ago may come any time
        return next_collection(now, times, weekdays, tz)
    for k in range(8):
        d: date = local.date() + timedelta(days=k)
        if d.weekday() not in weekdays or (k == 0 and last == d):
            continue
        if k == 0 and datetime.combine(d, until, tzinfo=zone) + LATE_TRUCK < local:
            continue  # today's truck passed it by: the next round
        return max(datetime.combine(d, usual, tzinfo=zone), local).astimezone(now.tzinfo)
    return now  # unreachable with a weekday in 0..6
