"""PM2.5 band crossing: ``pm25_high`` when a station's (humidity-corrected) mean over the last
hour exceeds ``pm25_limit`` (55.4 ug/m3, the top of the ISPU "Sedang" band, Permen LHK
P.14/2020), and did 10 minutes before too (:data:`analytics.air.HIGH_CONFIRM`; a station with no
reading in that earlier hour is judged on the last one alone): major, critical above the "Tidak
Sehat" band (150.4 ug/m3, ISPU 200).

Separate from spikes (:mod:`pm25_spike`): this is about the health band, whatever the
station's usual level. Clears at ``pm25_limit - pm25_clear_margin`` (hysteresis).
"""

from __future__ import annotations

import math
from typing import cast

from analytics.aqi import ISPU_BANDS
from analytics.rules.base import Context, Verdict
from lorong.core import alerts
from lorong.core.model import DeviceKind

SPEC = alerts.PM25_HIGH
TYPE = SPEC.name
MAJOR, CRITICAL = SPEC.severities
CRITICAL_UGM3 = ISPU_BANDS["pm25"][2].conc_high_ugm3
"""Top of the ISPU "Tidak Sehat" band for PM2.5 (150.4 ug/m3)."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise, escalate or clear ``pm25_high`` for every station with readings in the last hour."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    for dev in ctx.of_kind(DeviceKind.AIR):
        if dev.device_id not in ctx.air_1h.index:
            continue
        mean = float(cast(float, ctx.air_1h.at[dev.device_id, "pm25"]))
        if math.isnan(mean):
            continue
        before = float(cast(float, ctx.air_1h.at[dev.device_id, "pm25_before"]))
        lasting = math.isnan(before) or before > cfg.pm25_limit or ctx.is_active(dev.device_id, TYPE)
        if mean > cfg.pm25_limit and lasting:
            n = int(cast(float, ctx.air_1h.at[dev.device_id, "n"]))
            out.append(Verdict(dev.device_id, TYPE, CRITICAL if mean > CRITICAL_UGM3 else MAJOR,
                               {"pm25_1h_mean": round(mean, 2), "limit": cfg.pm25_limit, "readings": n},
                               kecamatan=dev.kecamatan))
        elif mean <= cfg.pm25_limit - cfg.pm25_clear_margin and ctx.is_active(dev.device_id, TYPE):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"pm25 1 h mean {mean:.1f}", kecamatan=dev.kecamatan))
    return out
