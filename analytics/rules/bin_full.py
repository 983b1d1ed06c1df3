"""Full bin: ``bin_full``, major from ``full_threshold``, critical from ``overflow_threshold``.

Thresholds: 0.8 is the usual "full" trigger of smart-bin services (Enevo, whose Edinburgh data
in tests/data scales 100 % to a bin 80 % physically full); 0.95 leaves one reading's worth of
room before waste spills (our choice). Both are settings; a bin's registry ``full_threshold``
overrides the first.

Debounce: the level must stay at or above the threshold for ``debounce_readings`` readings in a
row (or ``debounce_s`` seconds, whichever first): one reading of a bag held over the sensor
opens nothing. And the mean of the newest ``full_mean_readings`` (4) readings must be at or
above the threshold too: the EM310-UDL measures distance to +-10 mm (datasheet), about +-1.2 % of
a 1 m bin, so a bin standing a few millimetres below the line overnight sends two readings above
it in a row now and then; the mean of four halves that spread (measured on simulated cities:
early alerts 4 -> 2 of 186 crossings, the median delay 15 -> 19 min).

Hysteresis: an open alert clears only when the last ``debounce_readings`` levels are below
``threshold - full_hysteresis`` (default 0.7), so a level hovering at 0.79-0.81 does not flap; a
critical alert falls back to major below ``overflow - full_hysteresis``. A pickup
(:mod:`analytics.pickups`) after the alert opened clears it as soon as the level is low. Only the
readings since the bin's last pickup (the sensor's or a crew's Emptied) count: the full readings of
before it say nothing about the bin now (until it reports again, nothing opens).

``since``: when the level reached the threshold, i.e. the first reading of the current run of
readings at or above it. A run reads ``recent_window_h`` of readings; when the run fills all of them
it started at or before the first one. Then the ``since`` the last run put on the active alert is
kept if that run is within the readings read now (so no reading below the threshold can hide between
the two); otherwise ``since`` is the first reading read and ``since_exact`` is false ("at or before").
"""

from __future__ import annotations

from analytics.rules.base import Context, Verdict, debounced, iso, ms_iso, run_length, run_start
from lorong.core import alerts
from lorong.core.metrics import spec
from lorong.core.model import DeviceKind

SPEC = alerts.BIN_FULL
TYPE = SPEC.name
MAJOR, CRITICAL = SPEC.severities


def evaluate(ctx: Context) -> list[Verdict]:
    """Raise, escalate or clear ``bin_full`` for every bin with recent fill levels."""
    cfg = ctx.cfg
    out: list[Verdict] = []
    for dev in ctx.of_kind(DeviceKind.BIN):
        t, levels, cut = ctx.fill_since_pickup(dev.device_id)
        pickup = ctx.pickups.get(dev.device_id)
        if len(levels) == 0:
            continue
        thr, latest = dev.full_threshold, float(levels[-1])
        count, span = run_length(levels >= thr, t)
        active = ctx.active.get((dev.device_id, TYPE))
        mean = float(levels[-cfg.full_mean_readings:].mean())
        if debounced(count, span, cfg) and mean >= thr:
            o_count, o_span = run_length(levels >= cfg.overflow_threshold, t)
            critical = debounced(o_count, o_span, cfg) or (
                active is not None and active[0] == CRITICAL
                and latest >= cfg.overflow_threshold - cfg.full_hysteresis)
            since, exact = run_start(ctx, dev.device_id, TYPE, t, count)
            if cut and count == len(t):  # still full after its pickup (a partial one): full since then
                since, exact = ms_iso(t[0]), True
            out.append(Verdict(dev.device_id, TYPE, CRITICAL if critical else MAJOR,
                               {"fillingLevel": round(latest, 4), "threshold": thr,
                                "overflow_threshold": cfg.overflow_threshold, "readings": count,
                                "since": since, "since_exact": exact}, kecamatan=dev.kecamatan))
            continue
        if active is None:
            continue
        low = thr - cfg.full_hysteresis
        n = cfg.debounce_readings
        emptied = pickup is not None and pickup >= active[1]
        if latest < low and (emptied or (len(levels) >= n and bool((levels[-n:] < low).all()))):
            reason = f"emptied at {iso(pickup)}" if emptied else clear_reason(latest, low)
            out.append(Verdict(dev.device_id, TYPE, None, reason=reason, kecamatan=dev.kecamatan))
    return out


def clear_reason(latest: float, low: float) -> str:
    """Why a ``bin_full`` cleared on its level: ``"fillingLevel 0.650 < 0.700 (clear level)"``.

    Both levels (fractions 0..1, ``latest < low``) are printed to the fill level's resolution
    (:mod:`lorong.core.metrics`, 3 decimals = 1 mm of a 1 m bin). Rounding keeps order but may make
    them equal (0.8 - 0.1 is 0.7000000000000001 in floats, so a bin at 0.70 is below it): then the
    reason says ``<=``, so it never reads as a false inequality such as ``0.70 < 0.70``.
    """
    d = spec("fillingLevel").decimals
    a, b = round(latest, d), round(low, d)
    return f"fillingLevel {a:.{d}f} {'<' if a < b else '<='} {b:.{d}f} (clear level)"
