"""City-wide PM2.5 episode: ``pm25_episode`` (major) on the pseudo-device ``city`` when at least
``episode_min_stations`` (3) stations (and, when set, at least ``episode_fraction`` of the
stations that have a baseline; default 0) have a spike bucket (:mod:`analytics.air`) within the
same hour: haze
from regional burning or a city-wide inversion, not a local source. One station's spike is its
own alert (:mod:`pm25_spike`); many together are one event for the city officer.
Clears when fewer stations than needed spike within the hour.
"""

from __future__ import annotations

import math

from analytics.rules.base import Context, Verdict
from core import alerts

SPEC = alerts.PM25_EPISODE
TYPE = SPEC.name
(MAJOR,) = SPEC.severities
CITY = "city"
"""Device id of city-wide alerts."""
CITY_KECAMATAN = "all"
"""Kecamatan of city-wide alerts (their MQTT topic level)."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear the city's ``pm25_episode``."""
    cfg = ctx.cfg
    scored = ctx.air_spikes
    if scored.empty:
        eligible, spiking = 0, []
    else:
        stations = {d.device_id for d in ctx.devices.values()}
        scored = scored[scored["device_id"].isin(stations)]
        eligible = int(scored.loc[scored["z"].notna(), "device_id"].nunique())
        spiking = sorted(scored.loc[scored["spike"], "device_id"].unique().tolist())
    need = max(cfg.episode_min_stations, math.ceil(cfg.episode_fraction * eligible))
    if eligible and len(spiking) >= need:
        return [Verdict(CITY, TYPE, MAJOR, {"stations": spiking, "spiking": len(spiking), "with_baseline": eligible,
                                              "needed": need}, kecamatan=CITY_KECAMATAN,
                        evidence_at=max((ctx.latest_ts[d] for d in spiking if d in ctx.latest_ts), default=None))]
    if ctx.is_active(CITY, TYPE):
        return [Verdict(CITY, TYPE, None, reason=f"{len(spiking)} of {eligible} stations spiking",
                        kecamatan=CITY_KECAMATAN)]
    return []
