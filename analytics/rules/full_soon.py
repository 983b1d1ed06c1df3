"""Soon full: ``bin_full_soon`` (warning) when a bin's forecast reaches its threshold before the
next planned collection round (settings ``collection_times``/``collection_weekdays`` in
``timezone``, default daily 06:00 WITA), so the round can include it.

Clears when the forecast moves at least an hour past the round (hysteresis against a rate that
wobbles around the round time), when the bin is already full (``bin_full`` takes over) or
when it has been emptied since the warning opened.
"""

from __future__ import annotations

from datetime import timedelta

from analytics.rules.base import Context, Verdict, iso
from core.model import DeviceKind

TYPE = "bin_full_soon"
CLEAR_MARGIN = timedelta(hours=1)
"""A warning clears only when the forecast is this much later than the round."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``bin_full_soon`` for every bin with a forecast."""
    out: list[Verdict] = []
    if ctx.next_collection is None:
        return out
    for dev in ctx.of_kind(DeviceKind.BIN):
        active = ctx.active.get((dev.device_id, TYPE))
        _, levels = ctx.series(dev.device_id).values("fillingLevel")
        fc = ctx.forecasts.get(dev.device_id)
        latest = float(levels[-1]) if len(levels) else None
        if (latest is not None and latest >= dev.full_threshold) or ctx.is_active(dev.device_id, "bin_full"):
            if active is not None:
                out.append(Verdict(dev.device_id, TYPE, None, reason="full", kecamatan=dev.kecamatan))
            continue
        pickup = ctx.pickups.get(dev.device_id)
        if active is not None and pickup is not None and pickup >= active[1]:
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"emptied at {iso(pickup)}", kecamatan=dev.kecamatan))
            continue
        if fc is None:
            continue
        if fc.full_at is not None and fc.full_at <= ctx.next_collection:
            out.append(Verdict(dev.device_id, TYPE, "warning",
                               {"full_at": iso(fc.full_at), "next_collection": iso(ctx.next_collection),
                                "fill_rate_per_h": round(fc.rate_per_h, 5), "method": fc.method,
                                "fillingLevel": None if latest is None else round(latest, 4)},
                               kecamatan=dev.kecamatan))
        elif active is not None and (fc.full_at is None or fc.full_at > ctx.next_collection + CLEAR_MARGIN):
            out.append(Verdict(dev.device_id, TYPE, None, reason="forecast after the next collection",
                               kecamatan=dev.kecamatan))
    return out
