"""Soon full: ``bin_full_soon`` (warning) when a bin's forecast reaches its threshold before its
truck is expected (:func:`analytics.fillprofile.expected_pickup`: the time of day the bin's own
pickups happen, on the next collection day; for a bin never emptied yet, the time the city's
round usually comes, or, before any bin has a pickup, now while a round started less than a
shift ago, else the configured round start ``collection_times``), and within ``soon_horizon_h`` hours, even if it fills slower than
forecast (at ``soon_slow_factor``, 0.75, of the forecast rate: the 20th percentile of a bin's
fill rate over its collection intervals in the City of Edinburgh's Enevo data): a bin that fills
at its usual rate reaches 0.8 around its pickup about half the time, and a warning it gets on
those days is a coin toss a crew learns to ignore.

The trucks reach bins one after another over hours: the round's start time says nothing about
when a bin at the end of a route is emptied, and a bin the round in progress will reach before
it fills needs no warning. Details carry ``overflow_h``, how long the bin is expected to stand
full before its truck comes: the ranking for an extra pickup (largest first).

One warning per fill cycle: once opened, a warning stays until the bin is emptied (a pickup
after it opened), or the bin is full (``bin_full`` takes over); it does not clear when the
forecast wobbles, and it does not open again in the same cycle (a warning opened after the
bin's last pickup, even if cleared since, holds it back). The run that clears a warning for a
pickup judges the new cycle too.
"""

from __future__ import annotations

from datetime import timedelta

from analytics.rules.base import Context, Verdict, iso
from lorong.core import alerts
from lorong.core.model import DeviceKind

SPEC = alerts.BIN_FULL_SOON
TYPE = SPEC.name
(WARNING,) = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``bin_full_soon`` for every bin with a forecast."""
    out: list[Verdict] = []
    horizon = timedelta(hours=ctx.cfg.soon_horizon_h)
    for dev in ctx.of_kind(DeviceKind.BIN):
        active = ctx.active.get((dev.device_id, TYPE))
        _, levels, _ = ctx.fill_since_pickup(dev.device_id)
        pickup = ctx.pickups.get(dev.device_id)
        latest = float(levels[-1]) if len(levels) else None
        if (latest is not None and latest >= dev.full_threshold) or ctx.is_active(dev.device_id, "bin_full"):
            if active is not None:
                out.append(Verdict(dev.device_id, TYPE, None, reason="full", kecamatan=dev.kecamatan))
            continue
        if active is not None:
            if pickup is None or pickup < active[1]:
                continue
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"emptied at {iso(pickup)}",
                               kecamatan=dev.kecamatan))
            # the new cycle is judged now, as a run repeated at this time would (a partial pickup
            # can leave a bin that fills before its next truck)
        opened = ctx.last_opened.get((dev.device_id, TYPE))
        if opened is not None and (pickup is None or opened >= pickup):
            continue  # this fill cycle had its warning
        fc = ctx.forecasts.get(dev.device_id)
        due = ctx.expected_pickup.get(dev.device_id)
        if fc is None or fc.full_at is None or due is None:
            continue
        sure = fc.slow(ctx.now, ctx.cfg.soon_slow_factor)
        if sure is not None and sure <= due and sure - ctx.now <= horizon:
            out.append(Verdict(dev.device_id, TYPE, WARNING,
                               {"full_at": iso(fc.full_at), "full_at_slow": iso(sure), "expected_pickup": iso(due),
                                "overflow_h": round((due - fc.full_at).total_seconds() / 3600.0, 2),
                                "fill_rate_per_h": round(fc.rate_per_h, 5), "method": fc.method,
                                "fillingLevel": None if latest is None else round(latest, 4)},
                               kecamatan=dev.kecamatan))
    return out
