"""PM2.5 spike: ``pm25_spike`` (minor) when a station's last ``spike_persistence`` (3) consecutive
10-minute buckets all score as spikes against its own rolling median/MAD baseline (see
:mod:`analytics.air`): a fire or a generator nearby, even inside a healthy band. Local: the
excess is counted above the city's common rise (the median excess of the stations, columns
``local_*``), as :mod:`fire` counts a bin's heat above the median bin: a morning stronger than
usual everywhere (the weather) is nobody's spike, and a haze is the episode's. A rise the city
has held for over an hour comes off a station only as far as the station shared it
(:func:`analytics.air._common_rise`): a plume beside a station the episode did not reach is a
spike.

Persistence (30 min by default) keeps one dusty gust out. Clears when the newest bucket scores
below half of ``spike_z`` or of ``spike_min_excess_ugm3`` (hysteresis).
"""

from __future__ import annotations

from analytics.air import BUCKET
from analytics.rules.base import Context, Verdict, iso
from lorong.core import alerts
from lorong.core.model import DeviceKind

SPEC = alerts.PM25_SPIKE
TYPE = SPEC.name
(MINOR,) = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``pm25_spike`` for every station with scored buckets."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    if ctx.air_spikes.empty:
        return out
    scored = {str(k): g for k, g in ctx.air_spikes.groupby("device_id", sort=False)}
    p = cfg.spike_persistence
    for dev in ctx.of_kind(DeviceKind.AIR):
        g = scored.get(dev.device_id)
        if g is None or g["z"].isna().iloc[-1]:
            continue
        newest = g.iloc[-1]
        if newest["time"] < ctx.now - 2 * BUCKET:
            continue  # stale: the offline rule speaks
        tail = g.iloc[-p:]
        steps = tail["time"].diff().dropna()
        if len(tail) == p and bool(tail["local_spike"].all()) and bool((steps == BUCKET).all()):
            out.append(Verdict(dev.device_id, TYPE, MINOR,
                               {"pm25_10min": round(float(newest["pm25"]), 2),
                                "baseline_median": round(float(newest["median"]), 2),
                                "baseline_mad": round(float(newest["mad"]), 2), "z": round(float(newest["local_z"]), 2),
                                "excess": round(float(newest["local_excess"]), 2),
                                "since": iso(tail["time"].iloc[0])}, kecamatan=dev.kecamatan))
        elif ctx.is_active(dev.device_id, TYPE) and (
                float(newest["local_z"]) < cfg.spike_z / 2
                or float(newest["local_excess"]) < cfg.spike_min_excess_ugm3 / 2):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"z {float(newest['local_z']):.1f}",
                               kecamatan=dev.kecamatan))
    return out
