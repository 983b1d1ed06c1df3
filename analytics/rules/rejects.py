"""Too many rejected payloads: ``payload_rejects`` (minor) when a device has ``rejects_limit`` (5)
or more dead letters within ``rejects_window_s`` (1 h): a wrong codec, a firmware sending a new
layout, a clock never set. Counted by the device id each dead letter carries (the ingester takes it
from the payload, or from the format's topic layout). Clears when the count falls below half the limit.
"""

from __future__ import annotations

from analytics.rules.base import Context, Verdict
from lorong.core import alerts

SPEC = alerts.PAYLOAD_REJECTS
TYPE = SPEC.name
(MINOR,) = SPEC.severities

def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``payload_rejects`` for every active device."""
    limit = ctx.cfg.rejects_limit
    out: list[Verdict] = []
    for dev in ctx.devices.values():
        reasons = ctx.rejects.get(dev.device_id, {})
        count = sum(reasons.values())
        if count >= limit:
            out.append(Verdict(dev.device_id, TYPE, MINOR,
                               {"rejected": count, "window_s": ctx.cfg.rejects_window_s, "reasons": dict(reasons)},
                               kecamatan=dev.kecamatan, evidence_at=ctx.rejects_newest.get(dev.device_id)))
        elif count < limit / 2 and ctx.is_active(dev.device_id, TYPE):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"{count} rejects in the window",
                               kecamatan=dev.kecamatan))
    return out
