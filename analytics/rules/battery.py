"""Low battery: ``low_battery``, warning at ``battery_low`` (20 %), minor at ``battery_critical``
(10 %) of ``batteryLevel``.

20 % leaves weeks of service at a 10-minute interval on the lithium cells these sensors use, time
to plan a visit; 10 % asks for one soon (our choices; Milesight EM310-UDL and Dragino LDDS75 report
the level but publish no warning threshold). Hysteresis: clears only above
``battery_low + CLEAR_MARGIN`` (a cell's level reads higher when warm).
"""

from __future__ import annotations

from analytics.rules.base import Context, Verdict, ms_iso
from lorong.core import alerts

SPEC = alerts.LOW_BATTERY
TYPE = SPEC.name
WARNING, MINOR = SPEC.severities
CLEAR_MARGIN = 0.05
"""Clear above ``battery_low + CLEAR_MARGIN``."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``low_battery`` for every device reporting ``batteryLevel``."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    for dev in ctx.devices.values():
        t, level = ctx.series(dev.device_id).values("batteryLevel")
        if len(level) == 0:
            continue
        latest = float(level[-1])
        details = {"batteryLevel": latest, "at": ms_iso(t[-1])}
        if latest <= cfg.battery_critical:
            out.append(Verdict(dev.device_id, TYPE, MINOR, details, kecamatan=dev.kecamatan))
        elif latest <= cfg.battery_low:
            out.append(Verdict(dev.device_id, TYPE, WARNING, details, kecamatan=dev.kecamatan))
        elif latest > cfg.battery_low + CLEAR_MARGIN and ctx.is_active(dev.device_id, TYPE):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"batteryLevel {latest:.2f}",
                               kecamatan=dev.kecamatan))
    return out
