"""Time to full on real collections: City of Edinburgh Enevo smart bins, summer 2016
(tests/data/edinburgh-litter-bins, Open Government Licence v3.0; tests/data/SOURCES.md).

The data hold one row per emptying: the site, the local time and the fill level just before the
pickup (Enevo's 100 % is a bin 80 % physically full). There is no level series between pickups,
so the forecast that fits is Lorong's ``history`` method (:func:`analytics.forecast.from_history`:
the median fill rate of the site's earlier intervals, at least 5, at most the newest 20). For
each interval the forecast says when, after the pickup that started it, the bin reaches the
level the sensor saw before the next pickup; the error is that time minus the interval's real
length, in hours, for the intervals that did not end on the scale's top (those
are censored: the bin was full some time before). Printed: median and p90 of the absolute error
by the interval's length (the horizon), beside the Theil-Sen line of level against hours read
backwards (Lorong's method before) and the naive forecast (the previous interval's fill rate).

    .venv/bin/python bench/edinburgh_ttf.py
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.forecast import from_history, theil_sen  # noqa: E402

CSV = ROOT / "tests" / "data" / "edinburgh-litter-bins" / "raw_bin_data_enevo_sheet.csv"
TIME = "Date & Time of bin collection (Europe/London)"
FILL = "Fill level before collection (%) [Nb 100% is actually a bin that's 80% full]"
SCALE_TOP = 0.8
BUCKETS = [(0, 12), (12, 24), (24, 48), (48, 96), (96, 24 * 14)]
EPOCH = datetime(2016, 1, 1, tzinfo=UTC)


def main() -> int:
    """Print the error table; exit 0."""
    df = pd.read_csv(CSV, usecols=["Site", TIME, FILL])
    df["t"] = pd.to_datetime(df[TIME]).dt.tz_localize("Europe/London", ambiguous="NaT").dt.tz_convert("UTC")
    df["fill"] = df[FILL] / 100.0 * SCALE_TOP
    df = df.dropna(subset=["t"]).sort_values(["Site", "t"], kind="stable")
    rows = []
    for _, g in df.groupby("Site"):
        hours = g["t"].diff().dt.total_seconds().to_numpy() / 3600.0
        fill = g["fill"].to_numpy()
        for i in range(6, len(g)):
            h, f = hours[max(1, i - 20):i], fill[max(1, i - 20):i]
            if fill[i] >= SCALE_TOP or fill[i] <= 0.05 or hours[i] <= 0:
                continue
            fc = from_history(h, f, 0.0, EPOCH, float(fill[i]), min_intervals=5)
            naive_rate = f[-1] / h[-1] if h[-1] > 0 else 0.0
            slope, icpt = theil_sen(h, f) if np.ptp(h) > 0 else (0.0, 0.0)
            ours = (fc.full_at - EPOCH).total_seconds() / 3600.0 if fc and fc.full_at else None
            naive = fill[i] / naive_rate if naive_rate > 0 else None
            line = (fill[i] - icpt) / slope if slope > 1e-4 else None
            rows.append((hours[i], ours, naive, line))
    print(f"Edinburgh Enevo: {len(rows)} intervals (not ending at the scale's top), forecast from each site's "
          "earlier intervals")
    print(f"{'interval h':>11} {'n':>6} {'Lorong: median':>16} {'p90':>7} {'missing':>8} {'naive: median':>14} "
          f"{'p90':>7} {'line: median':>15} {'p90':>7}")
    for lo, hi in BUCKETS:
        sel = [r for r in rows if lo <= r[0] < hi]
        ours = np.array([abs(o - h) for h, o, _, _ in sel if o is not None])
        naive = np.array([abs(n - h) for h, _, n, _ in sel if n is not None])
        miss = sum(1 for _, o, _, _ in sel if o is None)
        med = np.array([abs(m - h) for h, _, _, m in sel if m is not None])
        if len(ours) and len(naive):
            print(f"{f'{lo}-{hi}':>11} {len(sel):6d} {np.median(ours):16.1f} {np.percentile(ours, 90):7.1f} {miss:8d} "
                  f"{np.median(naive):14.1f} {np.percentile(naive, 90):7.1f} "
                  f"{np.median(med):15.1f} {np.percentile(med, 90):7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
