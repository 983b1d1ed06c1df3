"""Fire in a bin: ``fire``, critical when the temperature reaches ``fire_temp_c``, major when it
rises by ``fire_rise_c`` within ``fire_rise_window_s``.

Sources: fixed-temperature heat detectors start at the "ordinary" class, 57-79 degC (NFPA 72,
National Fire Alarm and Signaling Code, temperature classification of heat detectors); 60 degC
sits in that class, above what a sun-heated bin reaches in Makassar's 24-34 degC climate (our
reading, not a measurement). Rate-of-rise heat detectors are listed for about 8.3 degC (15 degF)
per minute; a bin sensor reports every few minutes at best, so the rise is judged over
30 minutes: 10 degC in 30 min is far beyond the day's warming of a few degC per hour (our choice).

A smouldering fire warms a bin slowly (less than 10 degC in 30 min) and may never reach 60 degC:
it is caught by its **excess** over the other bins, major when the bin's last ``debounce_readings``
temperatures are all at least ``fire_excess_c`` (12 degC) above the median of every bin's newest
temperature (at least :data:`MIN_PEERS` bins): the city's bins share the weather, so the median
follows the day and the rain. 12 degC is our choice, above the 6-10 degC a dark bin in full sun
gains over its shaded neighbours in the simulated city, which also has sun-heated bins as
look-alikes.

No debounce for the limit and the rise: one reading is enough (a missed fire costs more than a
false alarm). Clears when the temperature is ``CLEAR_MARGIN_C`` below the limit and no longer rising.
"""

from __future__ import annotations

import numpy as np

from analytics.rules.base import Context, Verdict, ms_iso
from lorong.core import alerts
from lorong.core.model import DeviceKind

SPEC = alerts.FIRE
TYPE = SPEC.name
MAJOR, CRITICAL = SPEC.severities
CLEAR_MARGIN_C = 5.0
"""A fire alert clears below ``fire_temp_c - CLEAR_MARGIN_C`` (hysteresis)."""


MIN_PEERS = 5
"""Bins with a temperature needed for the city median the excess test compares against."""


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise or clear ``fire`` for every bin reporting a temperature."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    temps_of = {dev.device_id: ctx.series(dev.device_id).values("temperature") for dev in ctx.of_kind(DeviceKind.BIN)}
    newest = [float(v[-1]) for t, v in temps_of.values() if len(v) and t[-1] >= (ctx.now.timestamp() - 3600) * 1000]
    median = float(np.median(newest)) if len(newest) >= MIN_PEERS else None
    n = cfg.debounce_readings
    for dev in ctx.of_kind(DeviceKind.BIN):
        t, temps = temps_of[dev.device_id]
        if len(temps) == 0:
            continue
        latest = float(temps[-1])
        window = temps[(t >= t[-1] - cfg.fire_rise_window_s * 1000) & (t < t[-1])]
        rise = latest - float(window.min()) if len(window) else 0.0
        excess = None if median is None else latest - median
        details = {"temperature": latest, "rise_c": round(rise, 2), "window_s": cfg.fire_rise_window_s,
                   "limit_c": cfg.fire_temp_c, "at": ms_iso(t[-1]),
                   "excess_c": None if excess is None else round(excess, 2)}
        hot = median is not None and len(temps) >= n and bool((temps[-n:] >= median + cfg.fire_excess_c).all())
        if latest >= cfg.fire_temp_c:
            out.append(Verdict(dev.device_id, TYPE, CRITICAL, details, kecamatan=dev.kecamatan))
        elif rise >= cfg.fire_rise_c or hot:
            out.append(Verdict(dev.device_id, TYPE, MAJOR, details, kecamatan=dev.kecamatan))
        elif (ctx.is_active(dev.device_id, TYPE) and latest < cfg.fire_temp_c - CLEAR_MARGIN_C
              and rise < cfg.fire_rise_c / 2 and (excess is None or excess < cfg.fire_excess_c / 2)):
            out.append(Verdict(dev.device_id, TYPE, None, reason=f"temperature {latest:.1f} degC",
                               kecamatan=dev.kecamatan))
    return out
