"""Shared logic of the status-flag rules (:mod:`tilt`, :mod:`lid_open`)."""

from __future__ import annotations

from analytics.rules.base import Context, Verdict, debounced, run_length, run_start
from lorong.core.model import DeviceKind


def flag_rule(ctx: Context, metric: str, type_: str, severity: str) -> list[Verdict]:
    """Raise ``type_`` when ``metric`` (0/1 flag) is 1 for the debounce, clear when it is 0 for it;
    ``since`` is when the flag was set (:func:`analytics.rules.base.run_start`).

    Args:
        ctx: the run's context.
        metric: flag field (``tilt``, ``lidOpen``).
        type_: alert type.
        severity: severity to raise.
    """
    out: list[Verdict] = []
    for dev in ctx.of_kind(DeviceKind.BIN):
        t, flags = ctx.series(dev.device_id).values(metric)
        if len(flags) == 0:
            continue
        on, on_span = run_length(flags >= 0.5, t)
        off, off_span = run_length(flags < 0.5, t)
        if debounced(on, on_span, ctx.cfg):
            since, exact = run_start(ctx, dev.device_id, type_, t, on)
            out.append(Verdict(dev.device_id, type_, severity,
                               {metric: 1, "readings": on, "since": since, "since_exact": exact},
                               kecamatan=dev.kecamatan))
        elif ctx.is_active(dev.device_id, type_) and debounced(off, off_span, ctx.cfg):
            out.append(Verdict(dev.device_id, type_, None, reason=f"{metric} 0 for {off} readings",
                               kecamatan=dev.kecamatan))
    return out
