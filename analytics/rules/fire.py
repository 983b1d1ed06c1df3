"""Fire in a bin: ``fire``, critical when the temperature reaches ``fire_temp_c``, major when it
rises by ``fire_rise_c`` within ``fire_rise_window_s``.

Sources: fixed-temperature heat detectors start at the "ordinary" class, 57-79 degC (NFPA 72,
National Fire Alarm and Signaling Code, temperature classification of heat detectors); 60 degC
sits in that class, above what a sun-heated bin reaches in Makassar's 24-34 degC climate (our
reading, not a measurement). Rate-of-rise heat detectors are listed for about 8.3 degC (15 degF)
per minute; a bin sensor reports every few minutes at best, so the rise is judged over
30 minutes: 10 degC in 30 min is far beyond the day's warming of a few degC per hour (our choice).

No debounce: one reading at the limit is enough (a missed fire costs more than a false
alarm). Clears when the temperature is ``CLEAR_MARGIN_C`` below the limit and no longer rising.
"""

from __future__ import annotations

from analytics.rules.base import Context, Verdict, ms_iso
from core.model import DeviceKind

TYPE = "fire"
CLEAR_MARGIN_C = 5.0
"""A fire alert clears below ``fire_temp_c - CLEAR_MARGIN_C`` (hysteresis)."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``fire`` for every bin reporting a temperature."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    for dev in ctx.of_kind(DeviceKind.BIN):
        t, temps = ctx.series(dev.device_id).values("temperature")
        if len(temps) == 0:
            continue
        latest = float(temps[-1])
        window = temps[(t >= t[-1] - cfg.fire_rise_window_s * 1000) & (t < t[-1])]
        rise = latest - float(window.min()) if len(window) else 0.0
        details = {"temperature": latest, "rise_c": round(rise, 2), "window_s": cfg.fire_rise_window_s,
                   "limit_c": cfg.fire_temp_c, "at": ms_iso(t[-1])}
        if latest >= cfg.fire_temp_c:
            out.append(Verdict(dev.device_id, TYPE, "critical", details, kecamatan=dev.kecamatan))
        elif rise >= cfg.fire_rise_c:
            out.append(Verdict(dev.device_id, TYPE, "major", details, kecamatan=dev.kecamatan))
        elif (ctx.is_active(dev.device_id, TYPE) and latest < cfg.fire_temp_c - CLEAR_MARGIN_C
              and rise < cfg.fire_rise_c / 2):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"temperature {latest:.1f} degC",
                               kecamatan=dev.kecamatan))
    return out
