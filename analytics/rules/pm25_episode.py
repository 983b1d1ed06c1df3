"""City-wide PM2.5 episode: ``pm25_episode`` (major) on the pseudo-device ``city`` when at least
``episode_min_stations`` (3) stations (and, when set, at least ``episode_fraction`` of the
stations that have a baseline; default 0) have a spike bucket (:mod:`analytics.air`) within the
last hour, and that many of them began spiking within ``episode_onset_window_min`` (60) minutes
of each other: haze from regional burning or a city-wide inversion reaches the stations
together, while the plumes of local sources (open burning) that happen to overlap began at their
own times. One station's spike is its own alert (:mod:`pm25_spike`); many together are one event
for the city officer. Once open, the episode stays while enough stations spike within the hour
(whenever they began), and clears when fewer do.

A spike's onset is the first bucket of the station's newest run of spike buckets (10-minute
buckets in a row), seen back to :data:`analytics.air.SCORED`; an older run counts as begun then.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd

from analytics.air import BUCKET
from analytics.rules.base import Context, Verdict
from lorong.core import alerts

SPEC = alerts.PM25_EPISODE
TYPE = SPEC.name
(MAJOR,) = SPEC.severities
CITY = "city"
"""Device id of city-wide alerts."""
CITY_KECAMATAN = "all"
"""Kecamatan of city-wide alerts (their MQTT topic level)."""


def onsets(scored: pd.DataFrame, since: pd.Timestamp) -> dict[str, pd.Timestamp]:
    """When each station spiking since ``since`` began: the first bucket of its newest run.

    Args:
        scored: :func:`analytics.air.score_spikes` output (device_id, time, spike), any order.
        since: only stations with a spike bucket after this time count.

    Returns:
        device id -> onset (bucket start, UTC).
    """
    out: dict[str, pd.Timestamp] = {}
    for dev, g in scored.sort_values("time").groupby("device_id", sort=False):
        t, spike = g["time"].tolist(), g["spike"].tolist()
        last = max((i for i, s in enumerate(spike) if s), default=None)
        if last is None or t[last] <= since:
            continue
        first = last
        while first > 0 and spike[first - 1] and t[first] - t[first - 1] == BUCKET:
            first -= 1
        out[str(dev)] = t[first]
    return out


def together(began: dict[str, pd.Timestamp], need: int, window: timedelta) -> tuple[list[str], float] | None:
    """The most stations whose onsets fit in one ``window``, when at least ``need`` do.

    Returns:
        (their ids sorted, the span of the tightest ``need`` onsets among them in minutes), or None.
    """
    order = sorted(began.items(), key=lambda kv: kv[1])
    best: list[str] = []
    for i, (_, t0) in enumerate(order):
        group = [dev for dev, t in order[i:] if t - t0 <= window]
        if len(group) > len(best):
            best = group
    if len(best) < need:
        return None
    times = sorted(began[d] for d in best)
    span = min(times[k + need - 1] - times[k] for k in range(len(times) - need + 1))
    return sorted(best), span.total_seconds() / 60


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear the city's ``pm25_episode``."""
    cfg = ctx.cfg
    scored = ctx.air_spikes
    began: dict[str, pd.Timestamp] = {}
    if scored.empty:
        eligible, spiking = 0, []
    else:
        stations = {d.device_id for d in ctx.devices.values()}
        scored = scored[scored["device_id"].isin(stations)]
        eligible = int(scored.loc[scored["z"].notna(), "device_id"].nunique())
        began = onsets(scored, pd.Timestamp(ctx.now - timedelta(hours=1)))
        spiking = sorted(began)
    need = max(cfg.episode_min_stations, math.ceil(cfg.episode_fraction * eligible))
    active = ctx.is_active(CITY, TYPE)
    group = together(began, need, timedelta(minutes=cfg.episode_onset_window_min))
    if eligible and len(spiking) >= need and (active or group is not None):
        details = {"stations": spiking, "spiking": len(spiking), "with_baseline": eligible, "needed": need}
        if group is not None:
            details["began_within_min"] = round(group[1])
        return [Verdict(CITY, TYPE, MAJOR, details, kecamatan=CITY_KECAMATAN,
                        evidence_at=max((ctx.latest_ts[d] for d in spiking if d in ctx.latest_ts), default=None))]
    if active:
        return [Verdict(CITY, TYPE, None, reason=f"{len(spiking)} of {eligible} stations spiking",
                        kecamatan=CITY_KECAMATAN)]
    return []
