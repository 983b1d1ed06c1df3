"""Stuck sensor: ``stuck`` (minor) when the primary reading is identical for ``stuck_readings``
(12: two hours at the usual 10-minute interval) readings in a row.

Primary reading: bins ``distance`` (the raw ultrasonic value; ``fillingLevel`` when a bin sends
no distance), stations ``pm25``. A working ultrasonic or optical sensor jitters by at least one
count between readings; a frozen value means a hung sensor or a firmware resending its last
sample. Not stuck: a bin whose fill level is clamped at 1 (waste inside the blind zone: the
sensor then legitimately repeats its limit), or clamped at 0 when it sends no distance (distances
at or beyond the floor all give 0). An empty bin's floor is within the sensor's range (20-450 cm
for the EM310-UDL, :mod:`lorong.core.metrics`) and a working sensor jitters there as elsewhere, so a
distance repeated at the floor is stuck.
Clears as soon as the newest readings differ. ``since``: the first reading of the frozen value (as
``bin_full``'s, :func:`analytics.rules.base.run_start`).
"""

from __future__ import annotations

import numpy as np

from analytics.rules.base import Context, Verdict, run_length, run_start
from lorong.core import alerts
from lorong.core.model import DeviceKind

SPEC = alerts.STUCK
TYPE = SPEC.name
(MINOR,) = SPEC.severities
CLAMP_EPS = 1e-3
"""A fill level within this of 0 or 1 is clamped, not stuck."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``stuck`` for every device with enough recent readings."""
    n = ctx.cfg.stuck_readings
    out: list[Verdict] = []
    for dev in ctx.devices.values():
        series = ctx.series(dev.device_id)
        if dev.kind is DeviceKind.BIN:
            metric = "distance" if len(series.values("distance")[1]) >= n else "fillingLevel"
        else:
            metric = "pm25"
        t, vals = series.values(metric)
        if len(vals) < 2:
            continue
        last = vals[-n:]
        same = len(last) == n and float(last.max()) == float(last.min())
        if same and dev.kind is DeviceKind.BIN:
            fill = series.fields.get("fillingLevel")
            if fill is not None:
                f = fill[np.isin(series.t_ms, t[-n:])]
                f = f[~np.isnan(f)]
                floor = CLAMP_EPS if metric == "fillingLevel" else -1.0  # a distance jitters at the floor
                same = bool(((f > floor) & (f < 1 - CLAMP_EPS)).all())
        if same:
            count, _ = run_length(vals == vals[-1], t)
            since, exact = run_start(ctx, dev.device_id, TYPE, t, count)
            out.append(Verdict(dev.device_id, TYPE, MINOR,
                               {"metric": metric, "value": float(last[-1]), "readings": count, "since": since,
                                "since_exact": exact}, kecamatan=dev.kecamatan))
        elif ctx.is_active(dev.device_id, TYPE) and float(vals[-1]) != float(vals[-2]):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"{metric} changed", kecamatan=dev.kecamatan))
    return out
