"""Truck policies in the simulated city, in a closed loop: the fixed round against Lorong's plan.

The city's bins fill as in a scenario (:mod:`firmware_sim.city_bins`: bags by site type, hour and
weekday), day by day. On each round day the trucks leave the depot at ``rounds.start`` (+0-10 min)
and reach their bins one after another (travel at ``speed_kmh``, ``service_min`` per stop; skipped
and partial pickups at the city's rates, drawn per day and bin, the same under every policy). What
they visit is the policy:

* ``fixed``: every bin on the fixed round's routes (sectors around the depot, nearest neighbour
  first: :func:`firmware_sim.city_bins.truck_routes`), as the scenario's truth drives them;
* ``fixed-vrp``: every bin on the solver's routes (:func:`analytics.routes.solve`): the part of a
  saving that routing alone brings;
* ``lorong``: the bins Lorong picks at the round's start from what the sensors reported so far,
  with production's code (full now, or forecast full before the next round; planned at the
  round's start, the next round is the following one), on the solver's routes
  (:class:`firmware_sim.planner.Planner`).

Every policy drives the fixed round for the first ``warmup_days`` (a city ran its rounds before it
switched; Lorong learns each bin's profile from them); the figures count the ``days`` after
(:class:`PolicyFigures`). Solver trucks carry ``ceil(bins / trucks) x 660`` L each (what a truck's
share of the city's bins holds when full: a plan cannot hand one truck the whole city) and the
solver stops at its first local optimum (``local_optimum``), so a seed always gives the same figures.

Reference: in Groningen, sensor-driven collection drove 41 % fewer km than fixed rounds at a 99.9 %
service level, and the fixed rounds emptied bins 48.9 % full (arXiv 2409.13386).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics import routes
from firmware_sim.city import CityConfig
from firmware_sim.city_bins import (
    CF_HORIZON_S,
    STEP_S,
    FaultPlan,
    SimBin,
    Stop,
    Thresholds,
    fill_bin,
    grow_bags,
    haversine_km,
    place_bins,
    plan_faults,
    truck_routes,
)
from firmware_sim.planner import BIN_L, SOLVER_CAP_S, Choice, Planner
from lorong.core.settings import AnalyticsSettings

POLICIES = ("fixed", "fixed-vrp", "lorong")
"""The truck policies :func:`run_policy` knows (see the module docstring)."""
TARGET_KM_SAVING = 0.30
"""Lorong's plan should drive at least this share fewer km than the fixed round with no more overflow
bin-hours (issue #12's target, below the 41 % measured in Groningen, arXiv 2409.13386)."""


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """What a policy cost and achieved over the evaluation days.

    Attributes:
        policy: the policy.
        km: distance driven, km, haversine depot -> stops -> depot of every route.
        overflow_bin_h: bin-hours at a true level of 1.0 (waste no longer fits), all bins.
        critical_bin_h: bin-hours at or above ``overflow_threshold`` (0.95; the truth's ``routes``).
        mean_fill_at_emptying: mean true level before each pickup, 0..1.
        pickups: emptyings (visits not skipped).
        stops: visits, skipped ones included.
        round_days: round days counted.
        dropped: bins a plan left out for want of room in the trucks.
    """

    policy: str
    km: float
    overflow_bin_h: float
    critical_bin_h: float
    mean_fill_at_emptying: float
    pickups: int
    stops: int
    round_days: int
    dropped: int


@dataclass
class PolicyRun:
    """One policy's run: its figures, every bin's truck visits (by bin index, time order) and, for
    ``lorong``, each choice it made."""

    figures: PolicyFigures
    visits: list[list[Stop]]
    choices: list[Choice] = field(default_factory=list)


@dataclass
class SimCity:
    """A city ready for :func:`run_policy` (:func:`prepare`): bins with their bags, faults, read times (epoch s),
    depot, the fixed routes, and the evaluation window ``[t_eval, t_end)``."""

    city: CityConfig
    seed: int
    cfg: AnalyticsSettings
    bins: list[SimBin]
    faults: FaultPlan
    read_t: list[list[float]]
    depot: tuple[float, float]
    fixed: list[list[int]]
    t0: float
    t_eval: float
    t_end: float
    rounds: list[tuple[int, float]]  # (day index, nominal start, epoch s) of every round day

    @property
    def capacity_l(self) -> int:
        """Truck capacity for the solver, litres (module docstring)."""
        return math.ceil(len(self.bins) / self.city.rounds.trucks) * int(BIN_L)


def prepare(city: CityConfig, days: int, seed: int, warmup_days: int = 14) -> SimCity:
    """Place ``city``'s bins and grow their bags for ``warmup_days + days`` days from ``city.start``.

    Raises:
        ValueError: fewer than one day, a city without bins, or more than 60 days in all.
    """
    if days < 1 or warmup_days < 0 or days + warmup_days > 60:
        raise ValueError(f"days {days} + warm-up {warmup_days}: need 1 or more days, 60 in all at most")
    if city.bins < 1:
        raise ValueError(f"city {city.name} has no bins")
    total = days + warmup_days
    city = city.model_copy(update={"seed": seed, "days": total})
    rc, tz = city.rounds, city.tzinfo()
    cfg = AnalyticsSettings(collection_times=[rc.start], collection_weekdays=rc.weekdays, timezone=city.timezone)
    t0 = city.start.timestamp()
    t_end = (city.start + timedelta(days=total)).timestamp()
    bins = place_bins(city, seed)
    for b in bins:
        grow_bags(b, city, seed, t0, t_end + CF_HORIZON_S + STEP_S)
    cents = list(city.kecamatan.values())
    depot = (sum(c[0] for c in cents) / len(cents), sum(c[1] for c in cents) / len(cents))
    points = [(b.lat, b.lon) for b in bins]
    hh, mm = (int(x) for x in rc.start.split(":"))
    local0 = city.start.astimezone(tz)
    rounds = [(d, day.timestamp()) for d in range(total)
              if (day := (local0 + timedelta(days=d)).replace(hour=hh, minute=mm)).weekday() in rc.weekdays]
    return SimCity(city, seed, cfg, bins, plan_faults(city, seed, t0, t_end, bins),
                   [[t0 + b.phase_s + n * STEP_S for n in range(math.ceil((t_end - t0 - b.phase_s) / STEP_S))]
                    for b in bins],
                   depot, truck_routes(depot, points, min(rc.trucks, len(bins))), t0,
                   (city.start + timedelta(days=warmup_days)).timestamp(), t_end, rounds)


def _outcome(sim: SimCity, day: int, i: int, t: float) -> Stop:
    """A visit to bin ``i`` on round day ``day`` at ``t``: skip, partial or full (as the fixed rounds draw)."""
    rc, rnd = sim.city.rounds, random.Random(f"{sim.seed}:visit:{day}:{i}")
    u = rnd.random()
    if u < rc.skip_prob:
        return Stop(t, "skip", 0.0)
    if u < rc.skip_prob + rc.partial_prob:
        return Stop(t, "partial", rnd.uniform(0.25, 0.45))
    return Stop(t, "full", rnd.uniform(0.0, 0.03))


def drive(sim: SimCity, day: int, start: float, order: Sequence[Sequence[int]], visits: list[list[Stop]]) -> float:
    """Drive one round: truck ``v`` leaves the depot at ``start`` + 0-10 min and visits ``order[v]`` (bin
    indices) in turn, each stop the previous + haversine km / ``speed_kmh`` + ``service_min``; appends the
    visits to ``visits`` and returns the km driven (depot to depot, haversine)."""
    rc, km = sim.city.rounds, 0.0
    for v, route in enumerate(order):
        t = start + random.Random(f"{sim.seed}:depart:{day}:{v}").uniform(0, 600)
        here = sim.depot
        for i in route:
            leg = haversine_km(here, (sim.bins[i].lat, sim.bins[i].lon))
            km += leg
            t += leg / rc.speed_kmh * 3600 + rc.service_min * 60
            visits[i].append(_outcome(sim, day, i, t))
            here = (sim.bins[i].lat, sim.bins[i].lon)
        if route:
            km += haversine_km(here, sim.depot)
    return km


def run_policy(sim: SimCity, policy: str) -> PolicyRun:
    """Run ``sim`` under ``policy`` (:data:`POLICIES`) and measure it (:func:`measure`).

    Raises:
        ValueError: an unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    visits: list[list[Stop]] = [[] for _ in sim.bins]
    planner = Planner(sim) if policy == "lorong" else None
    order: list[list[int]] = sim.fixed
    if policy == "fixed-vrp":
        every = [routes.Stop(str(i), b.lat, b.lon, int(BIN_L)) for i, b in enumerate(sim.bins)]
        plan = routes.solve(sim.depot, every, sim.city.rounds.trucks, sim.capacity_l, SOLVER_CAP_S,
                            local_optimum=True)
        order = [[int(s.device_id) for s in r.stops] for r in plan.routes]
    km, days, dropped, choices = 0.0, 0, 0, []
    for j, (day, start) in enumerate(sim.rounds):
        today = sim.fixed if start < sim.t_eval else order
        if planner is not None and start >= sim.t_eval:
            nxt = sim.rounds[j + 1][1] if j + 1 < len(sim.rounds) else sim.t_end
            plan, chosen = planner.choose(start, visits, nxt)
            today = [[planner.index[s.device_id] for s in r.stops] for r in plan.routes]
            dropped += len(plan.dropped)
            choices += chosen
        driven = drive(sim, day, start, today, visits)
        if start >= sim.t_eval:
            km, days = km + driven, days + 1
    return PolicyRun(measure(sim, policy, visits, km, days, dropped), visits, choices)


def hours_at(sim: SimCity, b: SimBin, visits: list[Stop], level: float) -> float:
    """Hours of ``[t_eval, t_end)`` the bin's true level stands at or above ``level``: fill_bin's overflow time
    over the whole run minus that of the warm-up."""
    th = Thresholds(overflow=level)
    warm = [v for v in visits if v.t < sim.t_eval]
    whole = fill_bin(b, visits, [], sim.t0, sim.t_end, th).overflow_s
    return (whole - fill_bin(b, warm, [], sim.t0, sim.t_eval, th).overflow_s) / 3600.0


def measure(sim: SimCity, policy: str, visits: list[list[Stop]], km: float, round_days: int,
            dropped: int = 0) -> PolicyFigures:
    """The figures of a run from every bin's ``visits`` (by bin index, time order): true levels from
    :func:`~firmware_sim.city_bins.fill_bin`, the scenario truth's fill model; ``km``, ``round_days``
    and ``dropped`` as counted by the caller over the evaluation days."""
    over = crit = 0.0
    before: list[float] = []
    for b, vs in zip(sim.bins, visits, strict=True):
        over += hours_at(sim, b, vs, 1.0)
        crit += hours_at(sim, b, vs, sim.cfg.overflow_threshold)
        before += [p["level_before"] for p in fill_bin(b, vs, [], sim.t0, sim.t_end, Thresholds()).pickups
                   if datetime.fromisoformat(p["at"]).timestamp() >= sim.t_eval]
    stops = sum(1 for vs in visits for v in vs if v.t >= sim.t_eval)
    return PolicyFigures(policy, round(km, 1), round(over, 1), round(crit, 1),
                         round(sum(before) / len(before), 3) if before else 0.0, len(before), stops, round_days,
                         dropped)


def compare(city: CityConfig, days: int, seed: int, warmup_days: int = 14,
            policies: Sequence[str] = POLICIES) -> dict[str, PolicyFigures]:
    """Every policy of ``policies`` on the same city, seed and days (:func:`prepare`, :func:`run_policy`).

    Raises:
        ValueError: see :func:`prepare` and :func:`run_policy`.
    """
    sim = prepare(city, days, seed, warmup_days)
    return {p: run_policy(sim, p).figures for p in policies}


def km_saving(figures: dict[str, PolicyFigures], policy: str = "lorong") -> float | None:
    """Share of the fixed round's km that ``policy`` did not drive (0.36 = 36 % fewer), None without both."""
    fixed, other = figures.get("fixed"), figures.get(policy)
    if fixed is None or other is None or fixed.km <= 0:
        return None
    return 1.0 - other.km / fixed.km


def target_met(figures: dict[str, PolicyFigures]) -> bool | None:
    """Whether ``lorong`` met :data:`TARGET_KM_SAVING` with no more overflow bin-hours (at a true level of
    1.0) than ``fixed``; None without both."""
    saving = km_saving(figures)
    if saving is None:
        return None
    return saving >= TARGET_KM_SAVING and figures["lorong"].overflow_bin_h <= figures["fixed"].overflow_bin_h
