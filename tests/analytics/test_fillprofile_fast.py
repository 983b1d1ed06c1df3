"""The array forms of the fill profile (learning, expected fill, the walk to full) give the very
numbers of the hour-by-hour forms they replaced, to the last bit: a bin's forecast, and so every
``bin_full_soon`` decision, does not change with the speed-up. The hour-by-hour forms are kept
here as the reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.bins import median_newest
from analytics.fillprofile import (
    CLAMPED,
    FALL,
    HOURS_PER_WEEK,
    MAX_HORIZON_H,
    FillProfile,
    adapt_scale,
    fill_gaps,
    forecast_full_at,
    forecast_full_at_many,
    learn_profile,
    usual_pickup_time,
)

ZONES = ["Asia/Makassar", "Asia/Jayapura", "Asia/Kathmandu", "Europe/Amsterdam", "America/Sao_Paulo"]
"""Indonesia's zones, a +05:45 zone and two with daylight saving time (the histories below cross
Amsterdam's change of 29 March 2026)."""


def reference_profile(t_ms: np.ndarray, levels: np.ndarray, tz: str, min_days: float = 1.0) -> FillProfile | None:
    """``learn_profile``, one local time and one mean at a time."""
    if len(t_ms) < 2:
        return None
    zone = ZoneInfo(tz)
    dt_h = np.diff(t_ms) / 3.6e6
    inc = np.diff(levels)
    prev_inc = np.r_[0.0, inc[:-1]]
    prev_gap = np.r_[1.0, dt_h[:-1]]
    ok = ((dt_h == 1.0) & (levels[1:] < CLAMPED) & (levels[:-1] < CLAMPED) & (inc >= FALL)
          & ~((prev_inc < FALL) & (prev_gap == 1.0)))
    if ok.sum() < 24 * min_days * 0.5:
        return None
    when = [datetime.fromtimestamp(ms / 1000.0, zone) for ms in t_ms[1:][ok]]
    how = np.array([w.weekday() * 24 + w.hour for w in when])
    day = np.array([w.date().toordinal() for w in when])
    vals = np.maximum(inc[ok], 0.0)
    n_days = len(set(day.tolist()))
    if n_days < min_days:
        return None
    hod = how % 24
    by_hour = np.array([float(np.mean(vals[hod == h])) if (hod == h).any() else np.nan for h in range(24)])
    if np.isnan(by_hour).all():
        return None
    by_hour = fill_gaps(by_hour)
    overall = float(vals.mean()) if len(vals) else 0.0
    wd = how // 24
    factor = np.ones(7)
    if overall > 0:
        for d in range(7):
            sel = wd == d
            if sel.sum() >= 12:
                factor[d] = float(vals[sel].mean()) / overall
        seen = [d for d in range(7) if (wd == d).sum() >= 12]
        for d in set(range(7)) - set(seen):  # a weekday not seen: the seen days of its kind together
            kind = [k for k in seen if (k >= 5) == (d >= 5)]
            if kind:
                factor[d] = float(vals[np.isin(wd, kind)].mean()) / overall
    rate = np.empty(HOURS_PER_WEEK)
    for slot in range(HOURS_PER_WEEK):
        same = vals[how == slot]
        rate[slot] = float(np.mean(same)) if len(same) >= 2 else by_hour[slot % 24] * factor[slot // 24]
    own = np.array([0.5 * (rate[slot] + rate[(slot + 1) % HOURS_PER_WEEK]) for slot in range(HOURS_PER_WEEK)])
    return FillProfile(np.maximum(own, 0.0), float(n_days), tz)


def reference_fill_between(profile: FillProfile, start: datetime, end: datetime) -> float:
    """``FillProfile.fill_between`` as it was."""
    total, t = 0.0, start
    while t < end:
        nxt = min(end, (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
        total += profile.rate_at(t) * (nxt - t).total_seconds() / 3600.0
        t = nxt
    return total


def reference_full_at(profile: FillProfile, level_now: float, now: datetime, threshold: float,
                      scale: float = 1.0) -> datetime | None:
    """``forecast_full_at`` as it was."""
    if level_now >= threshold:
        return now
    level, t = level_now, now
    end = now + timedelta(hours=MAX_HORIZON_H)
    while t < end:
        nxt = min(end, (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0))
        step_h = (nxt - t).total_seconds() / 3600.0
        rate = profile.rate_at(t) * scale
        if rate > 0 and level + rate * step_h >= threshold:
            return t + timedelta(hours=(threshold - level) / rate)
        level += rate * step_h
        t = nxt
    return None


def history(rng: np.random.Generator, start: datetime, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Hourly means of a bin with a random daily shape, daily pickups, noise, gaps and a clamp."""
    hours = days * 24
    t = np.array([int((start + timedelta(hours=h)).timestamp() * 1000) for h in range(hours)], dtype=np.int64)
    shape = rng.gamma(1.0, 0.02, 24) * (rng.random(24) < 0.8)
    level, out = rng.uniform(0, 0.1), []
    for h in range(hours):
        if h % 24 == int(rng.integers(5, 8)):
            level = rng.uniform(0, 0.08)  # pickup
        level = min(1.0, level + shape[h % 24] + rng.normal(0, 0.004))
        out.append(round(level, 4))
    keep = rng.random(hours) > 0.05  # lost hours
    return t[keep], np.array(out)[keep]


@pytest.mark.parametrize("tz", ZONES)
def test_array_profile_equals_the_hour_by_hour_one(tz: str) -> None:
    rng = np.random.default_rng(abs(hash(tz)) % 2**32)
    start = datetime(2026, 3, 16, 5, 0, tzinfo=UTC)  # 14 days to 30 March: over Amsterdam's change
    for days in (1, 2, 5, 14):
        for _ in range(15):
            t, lv = history(rng, start, days)
            got, want = learn_profile(t, lv, tz), reference_profile(t, lv, tz)
            assert (got is None) == (want is None)
            if got is not None and want is not None:
                assert got.days == want.days
                # sums in another order: equal to the last bits a float's rounding allows
                assert np.allclose(got.rate, want.rate, rtol=1e-12, atol=1e-15), np.abs(got.rate - want.rate).max()


@pytest.mark.parametrize("tz", ZONES)
def test_array_walks_equal_the_hour_by_hour_ones(tz: str) -> None:
    rng = np.random.default_rng(7)
    t, lv = history(rng, datetime(2026, 3, 16, 5, 0, tzinfo=UTC), 14)
    prof = learn_profile(t, lv, tz)
    assert prof is not None
    checked = 0
    for k in range(200):
        now = datetime(2026, 3, 28, 0, 0, tzinfo=UTC) + timedelta(minutes=int(rng.integers(0, 3 * 1440)),
                                                                  milliseconds=int(rng.integers(0, 60_000)))
        since = now - timedelta(hours=float(rng.uniform(-1, 80)))
        assert prof.fill_between(since, now) == reference_fill_between(prof, since, now)
        level, threshold, scale = float(rng.uniform(0, 0.9)), float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.6))
        got, want = forecast_full_at(prof, level, now, threshold, scale), reference_full_at(prof, level, now, threshold,
                                                                                              scale)
        assert got == want, (k, got, want)
        checked += want is not None
        assert adapt_scale(prof, since, 0.05, now, level) >= 0.67
    assert checked > 50  # most walks reach the threshold within the horizon


def test_walks_of_many_bins_at_once_are_each_bins_own() -> None:
    """:func:`forecast_full_at_many` (the run's 20,000 bins walked in arrays) gives every bin the time its
    own walk gives, to the microsecond: bins of several zones in one call, rows split over several
    arrays, bins already full, bins never reaching the threshold."""
    rng = np.random.default_rng(5)
    profiles = [learn_profile(*history(rng, datetime(2026, 3, 16, 5, 0, tzinfo=UTC), 14), tz)
                for tz in ZONES for _ in range(4)]
    now = datetime(2026, 3, 28, 22, 17, 3, 250_000, tzinfo=UTC)  # Amsterdam changes within the horizon
    asks = []
    for k in range(300):
        prof = profiles[k % len(profiles)]
        assert prof is not None
        level = 0.97 if k % 25 == 0 else float(rng.uniform(0, 0.9))
        asks.append((prof, level, float(rng.uniform(0.5, 1.0)), 0.0 if k % 40 == 1 else float(rng.uniform(0.3, 1.6))))
    got = forecast_full_at_many(asks, now, rows=16)
    want = [reference_full_at(prof, level, now, threshold, scale) for prof, level, threshold, scale in asks]
    assert got == want
    assert sum(w is None for w in want) >= 5 and sum(w == now for w in want) >= 5
    assert len({w for w in want if w is not None}) > 200


@pytest.mark.parametrize("tz", ZONES)
def test_bins_emptied_in_the_same_hour_each_expect_their_own_fill(tz: str) -> None:
    """The pieces of the expected fill are kept per start and end (every bin of a run emptied in the same
    hour shares them): the second bin with the same times still gets its own profile's sum."""
    rng = np.random.default_rng(11)
    profiles = [learn_profile(*history(rng, datetime(2026, 3, 16, 5, 0, tzinfo=UTC), 14), tz) for _ in range(3)]
    now = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    for since in (now - timedelta(hours=4, minutes=30), now - timedelta(hours=30), now - timedelta(minutes=1)):
        for prof in (*profiles, *profiles):
            assert prof is not None
            assert prof.fill_between(since, now) == reference_fill_between(prof, since, now)
    sums = {p.fill_between(now - timedelta(hours=30), now) for p in profiles if p is not None}
    assert len(sums) == 3


def test_median_of_the_newest_three_is_numpys() -> None:
    rng = np.random.default_rng(3)
    for n in range(1, 7):
        for _ in range(200):
            levels = rng.choice([0.25, 0.5, 0.1, 0.2, 0.3, 1.0 / 3.0], n) + rng.normal(0, 1e-3, n) * rng.integers(0, 2)
            got, want = median_newest(levels), float(np.median(levels[-3:]))
            assert got == want and type(got) is float, (levels, got, want)


def test_usual_pickup_time_is_the_median_minute() -> None:
    """Pickups within an hour of one another (a truck's round): the median local minute of day of up
    to 7 pickups, whole minutes (``int(numpy.median)``)."""
    rng = np.random.default_rng(3)
    zone = ZoneInfo("Asia/Makassar")
    for _ in range(500):
        start = int(rng.integers(0, 1440 - 61))
        n = int(rng.integers(1, 8))
        pickups = sorted(datetime(2026, 3, 2, tzinfo=UTC) - timedelta(hours=8) + timedelta(
            days=int(d), minutes=start + int(m)) for d, m in zip(rng.integers(0, 7, n), rng.integers(0, 61, n),
                                                                 strict=True))
        minutes = [p.astimezone(zone).hour * 60 + p.astimezone(zone).minute for p in pickups]
        m = int(np.median(minutes))
        assert usual_pickup_time(pickups, "Asia/Makassar") == dtime(m // 60, m % 60)
    assert usual_pickup_time([], "Asia/Makassar") is None
