"""Where the overflow bin-hours of Lorong's plan and of the fixed round come from, in the simulated city.

For each city:seed, runs the fixed round and Lorong's plan as ``bench/route_policy.py`` does
(:func:`firmware_sim.policy.run_policy`) and puts every 5 minutes a bin stands truly full (level 1.0,
the target's overflow) in the evaluation days down to the round that started last before it:

* ``before the first round``: the first hours of the evaluation, before any round of it;
* ``left out``: the plan did not pick the bin at that round (the fixed round picks every bin);
* ``dropped``: picked, but no room in the trucks (no visit that round);
* ``reached after it overflowed``: picked, and the truck came later that round;
* ``visit skipped or partial``: the truck came before, but skipped it or emptied it in part;
* ``full again before the next visit``: emptied, and full again before the next round's truck.

Then per site type and daily fill (below 0.6, 0.6-0.9, 0.9 and more of the bin a day) the bin-hours of
both, and per round of the plan its due (:func:`analytics.routes.collect_by`, when it assumed the next
round reaches a bin left out) beside the time its trucks reached their last bin.

    .venv/bin/python bench/route_overflow.py makassar:1 small:3

Tune on makassar seed 1 and new seeds only, never on the held-out runs of bench/route_policy.py.
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_sim.city import load_city, packaged_city
from firmware_sim.city_bins import Stop, Thresholds, fill_bin
from firmware_sim.policy import PolicyRun, SimCity, prepare, run_policy

GRID_S = 300.0
CAUSES = ("before the first round", "left out", "dropped", "reached after it overflowed", "visit skipped or partial",
          "full again before the next visit")
"""The causes of an overflow bin-hour (module docstring)."""


def full_steps(sim: SimCity, i: int, visits: list[Stop]) -> list[float]:
    """The times (epoch s, every :data:`GRID_S` of the evaluation days) bin ``i`` stands at a true level of 1.0."""
    grid = [sim.t_eval + k * GRID_S for k in range(int((sim.t_end - sim.t_eval) / GRID_S))]
    levels = fill_bin(sim.bins[i], visits, grid, sim.t0, sim.t_end, Thresholds(overflow=1.0)).levels
    return [t for t, lv in zip(grid, levels, strict=True) if lv >= 1.0]


def causes(sim: SimCity, run: PolicyRun, everything: bool) -> dict[str, float]:
    """Bin-hours at 1.0 by cause (module docstring); ``everything``: every bin is picked every round (fixed)."""
    starts = [s for _, s in sim.rounds if s >= sim.t_eval]
    picked: dict[float, set[int]] = defaultdict(set)
    index = {b.device_id: b.index for b in sim.bins}
    for c in run.choices:
        picked[c.at].add(index[c.device_id])
    out: dict[str, float] = dict.fromkeys(CAUSES, 0.0)
    for i in range(len(sim.bins)):
        for t in full_steps(sim, i, run.visits[i]):
            j = bisect.bisect_right(starts, t) - 1
            if j < 0:
                out["before the first round"] += GRID_S / 3600
                continue
            end = starts[j + 1] if j + 1 < len(starts) else sim.t_end
            came = [v for v in run.visits[i] if starts[j] <= v.t < end]
            if not everything and i not in picked[starts[j]]:
                key = "left out"
            elif not came:
                key = "dropped"
            elif came[0].t > t:
                key = "reached after it overflowed"
            elif came[0].outcome != "full":
                key = "visit skipped or partial"
            else:
                key = "full again before the next visit"
            out[key] += GRID_S / 3600
    return out


def main() -> int:
    """Run each city:seed given; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="city:seed (a packaged city or a city file)")
    ap.add_argument("--days", type=int, default=7, help="days measured after the warm-up")
    ap.add_argument("--warmup", type=int, default=14, help="days of fixed rounds first")
    args = ap.parse_args()
    for spec in args.runs:
        name, _, seed_text = spec.partition(":")
        path = Path(name) if name.endswith((".yaml", ".yml", ".json")) else packaged_city(name)
        city = load_city(path)
        sim = prepare(city, args.days, int(seed_text) if seed_text else city.seed, args.warmup)
        fixed, lorong = run_policy(sim, "fixed"), run_policy(sim, "lorong")
        print(f"{city.name} seed {sim.seed}: overflow bin-h fixed {fixed.figures.overflow_bin_h:.0f}, "
              f"lorong {lorong.figures.overflow_bin_h:.0f}; km {fixed.figures.km:.0f} / {lorong.figures.km:.0f}")
        fx, lo = causes(sim, fixed, True), causes(sim, lorong, False)
        for key in CAUSES:
            print(f"  {key:36s} fixed {fx[key]:7.1f}  lorong {lo[key]:7.1f}")
        by: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for i, b in enumerate(sim.bins):
            band = ">= 0.9" if b.daily_fill >= 0.9 else "0.6-0.9" if b.daily_fill >= 0.6 else "< 0.6"
            row = by[(b.site, band)]
            row[0] += 1.0
            row[1] += len(full_steps(sim, i, fixed.visits[i])) * GRID_S / 3600
            row[2] += len(full_steps(sim, i, lorong.visits[i])) * GRID_S / 3600
        print("  site, daily fill: bins, bin-h fixed / lorong")
        for (site, band), (n, f, g) in sorted(by.items()):
            if f or g:
                print(f"    {site:9s} {band:8s} {n:4.0f}  {f:7.1f} / {g:7.1f}  ({g - f:+.1f})")
        tz = city.tzinfo()
        dues = {c.at: c.due for c in lorong.choices}
        for start, due in sorted(dues.items()):
            last = max((v.t for vs in lorong.visits for v in vs if start <= v.t < start + 86400), default=start)
            when = datetime.fromtimestamp(start, tz)
            print(f"  round {when:%a %d %H:%M}: due {datetime.fromtimestamp(due, tz):%a %H:%M}, "
                  f"last bin reached {datetime.fromtimestamp(last, tz):%H:%M}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
