"""Offline device: ``offline`` (major) when a device sent nothing for ``offline_factor`` (3) x its
registry ``report_interval_s``. Three missed uplinks, not one: sensors send unconfirmed LoRaWAN
uplinks, which nobody retransmits, so losing one frame to a collision is normal; three in a row
rarely is (our choice, the same factor as the API's "stale" flag).

A device that never reported is offline once that long has passed since it was installed (or
registered). Clears with the first new reading. After a person clears it, it opens again only
when the device stays silent for the limit counted from the clear.
"""

from __future__ import annotations

from datetime import timedelta

from analytics.rules.base import Context, Verdict, iso
from lorong.core import alerts

SPEC = alerts.OFFLINE
TYPE = SPEC.name
(MAJOR,) = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``offline`` for every active device."""
    out: list[Verdict] = []
    for dev in ctx.devices.values():
        limit = timedelta(seconds=ctx.cfg.offline_factor * dev.report_interval_s)
        last = ctx.latest_ts.get(dev.device_id)
        ref = last if last is not None else dev.since
        if ref is None or ref > ctx.now:
            continue
        silent = ctx.now - ref
        if silent > limit:
            out.append(Verdict(dev.device_id, TYPE, MAJOR,
                               {"last_seen": iso(last), "silent_s": round(silent.total_seconds()),
                                "limit_s": round(limit.total_seconds())}, kecamatan=dev.kecamatan,
                               evidence_at=ctx.now - limit))  # silent for the whole limit after it
        elif last is not None and ctx.is_active(dev.device_id, TYPE):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"reading at {iso(last)}",
                               kecamatan=dev.kecamatan))
    return out
