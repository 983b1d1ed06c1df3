"""What the city gains: km, overflow and fill at emptying of the fixed round against Lorong's plan.

For each city and seed: the simulated city runs day by day, the first days on the fixed round
(Lorong learns each bin's fill profile), then under each policy of firmware_sim/policy.py: the
fixed round, the fixed round on the solver's routes, and Lorong's plan (the bins production's
code picks from what the sensors reported, on the solver's routes). Prints a table per run and a
summary against the target (at least 30 % fewer km than the fixed round, no more overflow
bin-hours); ``--json FILE`` also writes the figures.

    .venv/bin/python bench/route_policy.py                          # makassar seed 1 + held-out runs
    .venv/bin/python bench/route_policy.py makassar:11 small:99     # city:seed pairs
    .venv/bin/python bench/route_policy.py --days 7 --warmup 14

makassar seed 1 is the city the policy's choices (truck capacity, warm-up, planning at the round's
start) were looked at on; the other runs were not looked at before they were measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from firmware_sim.city import load_city, packaged_city
from firmware_sim.cli import policies_table
from firmware_sim.policy import POLICIES, TARGET_KM_SAVING, compare, km_saving, target_met

RUNS = ["makassar:1", "makassar:11", "banyuwangi-like:23", "jakarta-like:11", "small:99"]


def main() -> int:
    """Run each city:seed given (the standard set by default); exit 0."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=RUNS, help="city:seed (a packaged city or a city file)")
    ap.add_argument("--days", type=int, default=7, help="days measured after the warm-up")
    ap.add_argument("--warmup", type=int, default=14, help="days of fixed rounds first")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    console = Console(width=150)
    out, summary = [], []
    for run in args.runs:
        name, _, seed_text = run.partition(":")
        path = Path(name) if name.endswith((".yaml", ".yml", ".json")) else packaged_city(name)
        city = load_city(path)
        seed = int(seed_text) if seed_text else city.seed
        began = time.monotonic()
        figures = compare(city, args.days, seed, args.warmup, POLICIES)
        seconds = time.monotonic() - began
        console.print(policies_table(figures, f"{city.name}, seed {seed}, {city.bins} bins, {city.rounds.trucks} "
                                              f"trucks: {args.days} days after {args.warmup} ({seconds:.0f} s)"))
        saving, met = km_saving(figures), target_met(figures)
        lo, fx = figures["lorong"], figures["fixed"]
        summary.append(f"{city.name} seed {seed}: {saving:.0%} fewer km, overflow {lo.overflow_bin_h:.0f} vs "
                       f"{fx.overflow_bin_h:.0f} bin-h, fill at emptying {lo.mean_fill_at_emptying:.2f} vs "
                       f"{fx.mean_fill_at_emptying:.2f}: {'met' if met else 'NOT met'}")
        out.append({"city": city.name, "seed": seed, "days": args.days, "warmup_days": args.warmup,
                    "seconds": round(seconds, 1), "policies": {k: asdict(v) for k, v in figures.items()}})
    console.print(f"target: at least {TARGET_KM_SAVING:.0%} fewer km than the fixed round, no more overflow "
                  "bin-hours (true level 1.0)", highlight=False)
    for line in summary:
        console.print("  " + line, highlight=False)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
