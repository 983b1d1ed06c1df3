"""Fill profiles learned across the city's bins: a bin with a short history borrows the shape of
its day from the bins that fill like it (partial pooling).

After a day or three, one bin's own history gives one to three hourly increments per hour of the
day: waste arrives in bags, and one bag more or less in an hour moves that hour's rate by half or
double. The bins of one kind of site (a pasar, a school, a residential lorong) share the shape of
their day (the market's morning, the school's hours, the lorong's two meal peaks) and differ
mostly in how much they take. So each hour's rate is a weighted mean of the bin's own rate at that
hour and the shape of its peers' day times the bin's own daily fill:

    rate(h) = (n(h) * own(h) + k * total * peer_shape(h)) / (n(h) + k)

the credibility (partial pooling) estimate of hierarchical models (Buhlmann 1967, "Experience
rating and credibility", ASTIN Bulletin 4(3):199-207; Gelman & Hill 2007, *Data Analysis Using
Regression and Multilevel/Hierarchical Models*, 12.2): ``n(h)`` is the number of the bin's own
increments at hour ``h`` (one a day), so its own data take over as its history grows: after a
week its own rate carries 7 / 8 of the weight, after one day 1 / 2.

* ``own(h)``: the mean of the bin's increments at that hour
  (:func:`analytics.fillprofile.learn_profile`'s steps 2 and 5; hours never seen take their neighbours').
* ``total``: the sum of ``own(h)`` over the day.
* ``peer_shape``: the mean share of each hour in the daily fill of the bin's :data:`PEERS`
  nearest bins by the shape of their day (Euclidean distance between the 24 hourly shares, the
  bin included; :func:`peer_shapes`). The registry does not say what kind of site a bin stands at; its history does.
* ``k`` = :data:`PRIOR_DAYS`.

Bins with less history than :func:`analytics.fillprofile.learn_profile` needs get no profile,
as before; weekday factors and hours of the week come from the bin's own history
(:func:`analytics.fillprofile.week_profile`).

Measured on the simulated tuning cities (the 40-bin standard city and the 100-bin one, offline
on the same loaded readings, together with :func:`analytics.fillprofile.adapt_scale`'s weight):
the median time-to-full error 3-6 / 6-12 h ahead went 1.30 / 1.65 -> 1.14 / 1.56 h (40 bins,
three days) and 1.44 / 1.64 -> 1.43 / 1.64 h (100 bins, five days, measured with the L1
distance: more of each bin's own history, less to borrow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from analytics.fillprofile import FillProfile, fill_gaps, increments, means_by_key, week_profile

PEERS = 5
"""Bins whose day shape is pooled (the bin itself included; our choice). A city has each kind of
site many times over (Makassar's 15 kecamatan each have markets, schools, offices and lorong),
so the five nearest shapes are mostly of one kind; fewer would average the noise of too few bins.
A bin whose shape nobody shares is pulled towards its nearest ones by ``PRIOR_DAYS`` only while
its own history is short."""
PRIOR_DAYS = 1.0
"""Weight of the peers' shape, in days of the bin's own history (``k`` above): with one day of
its own the bin and its peers count half each. One day is the least history a profile is learned
from (``learn_profile``'s ``min_days``)."""


def learn_profiles(series: Mapping[str, tuple[np.ndarray, np.ndarray]], tz: str, min_days: float = 1.0,
                   peers: int = PEERS, prior_days: float = PRIOR_DAYS,
                   pickups: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> dict[str, FillProfile]:
    """Each bin's pooled profile (see the module docstring).

    Args:
        series: device id -> ``(t_ms, levels)`` of its hourly mean fillingLevel (bucket starts,
            epoch ms ascending; 0..1).
        tz: IANA zone of the profiles' hours.
        min_days: bins with fewer days of valid increments get no profile.
        peers: bins pooled per shape (:data:`PEERS`).
        prior_days: weight of the pooled shape in days (:data:`PRIOR_DAYS`).
        pickups: device id -> ``(epoch ms, level after)`` of its pickups in the same span, which
            give the hours around each pickup (:func:`analytics.fillprofile.pickup_increments`).

    Returns:
        device id -> profile, for the bins with enough history.
    """
    own: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]] = {}
    for device_id, (t_ms, levels) in series.items():
        how, day, vals = increments(t_ms, levels, tz, (pickups or {}).get(device_id, ()))
        n_days = len(np.unique(day))
        if len(vals) < 24 * min_days * 0.5 or n_days < min_days:
            continue
        rate, n = means_by_key(how % 24, vals, 24)
        count = n.astype(float)
        own[device_id] = (fill_gaps(rate), count, how, vals, float(n_days))
    shapes = {d: m / m.sum() for d, (m, *_) in own.items() if m.sum() > 0}
    ids = list(shapes)
    mat = np.array([shapes[d] for d in ids]) if ids else np.zeros((0, 24))
    pooled = peer_shapes(mat, peers)
    row = {d: i for i, d in enumerate(ids)}
    out: dict[str, FillProfile] = {}
    for device_id, (rate, count, how, vals, days) in own.items():
        by_hour = rate
        if device_id in row and len(ids) > 1:
            by_hour = (count * rate + prior_days * float(rate.sum()) * pooled[row[device_id]]) / (count + prior_days)
        out[device_id] = week_profile(by_hour, how, vals, days, tz)
    return out


def peer_shapes(shapes: np.ndarray, peers: int, chunk: int = 128) -> np.ndarray:
    """For each row of ``shapes`` (n x 24 hourly shares), the mean of the ``peers`` rows nearest
    to it by Euclidean distance, itself included (n x 24).

    The squared distances come from one matrix product per ``chunk`` rows (``|a|^2 + |b|^2 -
    2 a.b``): 5,000 bins took 9 s on a busy 2-core machine, where the L1 distance took 49 s and a
    loop over the bins 86 s (once per local day and process: :class:`analytics.frames.PerLocalDay`).
    A chunk's distances are ``chunk`` x n floats, a few temporaries of them at once: 128 rows of
    20,000 bins are 20 MB each, where 1,024 rows took the job's peak past 1.2 GB (bench/analytics_job.py);
    each row's result is the same whatever the chunk.
    """
    n = len(shapes)
    k = min(peers, n)
    sq = (shapes**2).sum(axis=1)
    out = np.empty_like(shapes)
    for lo in range(0, n, chunk):
        block = shapes[lo:lo + chunk]
        dist = sq[lo:lo + chunk, None] + sq[None, :] - 2.0 * block @ shapes.T
        dist[np.arange(len(block)), np.arange(lo, lo + len(block))] = -1.0  # itself first
        near = np.argpartition(dist, k - 1, axis=1)[:, :k]
        out[lo:lo + chunk] = shapes[near].mean(axis=1)
    return out
