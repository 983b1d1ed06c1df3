"""The bins of a simulated city: waste that arrives in bags, fixed collection rounds, ultrasonic sensors
with injected faults, and the truth of what happened (``firmware_sim/SCENARIO.md``).

Pure model, no I/O. :func:`simulate_bins` returns registry rows, the uplinks the sensors sent and the
truth (events, look-alikes, pickups, fill cycles, route figures). Times inside are epoch seconds (UTC);
they become ISO-8601 text only in the output. Every random draw comes from a ``random.Random`` seeded
with ``"<seed>:<concern>"``, so one concern (say the faults) can change without moving the others.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from firmware_sim.city import SITE_TYPES, CityConfig
from firmware_sim.encoders.milesight import encode_em310_udl
from firmware_sim.fleet import lorong_json_uplink, ttn_v3_uplink

STEP_S = 600
"""Sensor report interval and fill-process step, s (EM310-UDL default reporting interval is 10 min)."""

BAG_MIN, BAG_MAX = 0.005, 0.025
"""Size of one bag as a fraction of the bin (our choice: a 5-15 l household bag in a 660 l bin)."""

FILL_SIGMA = 0.35
"""Spread (lognormal sigma) of a bin's own daily fill around its site type's mean (our choice)."""

CF_HORIZON_S = 48 * 3600
"""How far a counterfactual fill is continued after a cycle's end (SCENARIO.md: 48 h)."""

BRIEF_FULL_S = 1800
"""A bin emptied within this long after it became full needed nobody: its truck was already on the
way (SCENARIO.md; three report intervals). A bin that became full within this long before the
scenario's end is not required either: the readings that confirm it (``debounce_readings``, three)
come after the end, where no replay can see them."""


@dataclass(frozen=True)
class SiteProfile:
    """How a site type fills (all our choice, from the rhythm of Makassar streets).

    Attributes:
        daily_fill: mean fill per day, fraction of the bin.
        diurnal: 24 relative weights, local hours 0..23.
        weekday: 7 factors, Monday..Sunday (market days, closed schools and offices).
        label: street label of such a site.
    """

    daily_fill: float
    diurnal: tuple[float, ...]
    weekday: tuple[float, ...]
    label: str


SITES: dict[str, SiteProfile] = {
    "pasar": SiteProfile(1.1, (0.2, 0.2, 0.3, 1, 3, 5, 6, 6, 5, 4, 3, 2.5, 2, 1.5, 1.2, 1, 1, 1, 0.8, 0.5, 0.3, 0.2,
                               0.2, 0.2), (1, 1.6, 1, 1, 1.6, 1, 1), "Pasar"),
    "lorong": SiteProfile(0.45, (0.2, 0.1, 0.1, 0.1, 0.3, 1.5, 3, 3.5, 2.5, 1.5, 1, 1, 1.2, 1, 0.8, 0.8, 1.2, 2.5, 3.5,
                                 3.5, 2.5, 1.2, 0.6, 0.3), (1, 1, 1, 1, 1, 1.1, 1.15), "Lorong"),
    "school": SiteProfile(0.5, (0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.5, 3, 4, 4, 5, 5, 4, 2, 1, 0.5, 0.2, 0.1, 0.05,
                                0.05, 0.05, 0.05, 0.05, 0.05), (1, 1, 1, 1, 1, 0.2, 0.2), "SD Negeri"),
    "office": SiteProfile(0.4, (0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.2, 0.3, 2, 3, 3, 3, 4, 4, 3, 3, 2.5, 2, 0.5, 0.2,
                                0.1, 0.05, 0.05, 0.05), (1, 1, 1, 1, 1, 0.2, 0.2), "Kantor"),
    "terminal": SiteProfile(0.8, (0.3, 0.2, 0.2, 0.3, 1, 2.5, 3.5, 3, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5, 3, 3.5, 3.5, 3,
                                  2.5, 2, 1.5, 1, 0.5), (1, 1, 1, 1, 1.1, 1.2, 1.2), "Terminal"),
}
"""Fill profile per site type."""


ACCURACY_MM = 10.0
"""Distance accuracy of the bins' ultrasonic sensors, +-mm (EM310-UDL datasheet, +-1 cm; :func:`sensor_mm`
draws its error within it)."""


@dataclass(frozen=True)
class Thresholds:
    """The analytics defaults the truth is stated against (``lorong.core.settings.AnalyticsSettings``)."""

    full: float = 0.8
    overflow: float = 0.95
    battery_low: float = 0.2
    stuck_readings: int = 12
    pickup_min_drop: float = 0.3


@dataclass
class SimBin:
    """One bin of the city: placement, geometry, fill rate, sensor and battery state."""

    index: int
    device_id: str
    lorawan: bool
    site: str
    kecamatan: str
    lat: float
    lon: float
    depth_mm: float
    blind_zone_mm: float
    daily_fill: float
    phase_s: float
    level0: float
    battery0: float
    drain_per_day: float
    temp_offset: float
    bag_t: list[float] = field(default_factory=list)
    bag_s: list[float] = field(default_factory=list)


@dataclass
class BinsResult:
    """What :func:`simulate_bins` returns; dict shapes are those of SCENARIO.md.

    Attributes:
        devices: registry rows (fields of ``devices.registry.DeviceIn``).
        messages: ``(rx epoch s, topic, payload)`` per uplink, unsorted.
        events, lookalikes, pickups, cycles: truth lists.
        routes: the ``routes`` figures.
    """

    devices: list[dict[str, Any]]
    messages: list[tuple[float, str, bytes]]
    events: list[dict[str, Any]]
    lookalikes: list[dict[str, Any]]
    pickups: list[dict[str, Any]]
    cycles: list[dict[str, Any]]
    routes: dict[str, Any]


def iso(t: float) -> str:
    """Epoch seconds as ISO-8601 UTC text, whole seconds (truth times)."""
    return datetime.fromtimestamp(round(t), UTC).isoformat()


def poisson(rnd: random.Random, lam: float) -> int:
    """A Poisson draw with mean ``lam`` (Knuth's multiplication method; fine for lam < 30)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def site_counts(shares: dict[str, float], n: int) -> list[str]:
    """``n`` site types in proportion to ``shares`` (largest remainder), in :data:`SITE_TYPES` order."""
    total = sum(shares.values())
    exact = {s: shares.get(s, 0.0) / total * n for s in SITE_TYPES}
    counts = {s: int(v) for s, v in exact.items()}
    for s in sorted(SITE_TYPES, key=lambda s: (counts[s] - exact[s], SITE_TYPES.index(s)))[: n - sum(counts.values())]:
        counts[s] += 1
    return [s for s in SITE_TYPES for _ in range(counts[s])]


def place_bins(city: CityConfig, seed: int, catalogue: int | None = None) -> list[SimBin]:
    """Place the city's bins: site types by share, kecamatan round-robin, every other bin LoRaWAN.

    DevEUIs use Milesight's OUI ``24E124`` plus a byte of the city name's CRC-32, so two cities
    never share ids; native bins are ``<id_prefix>-BIN-<nnnn>``.

    With ``catalogue`` the site types are shuffled over that many bins (the shares of the whole
    catalogue) and the city gets the first ``city.bins`` of them; every later draw is per bin in index
    order, so bin k is the same bin (site, kecamatan, place, depth, fill rate) in any fleet of up to
    ``catalogue`` bins of that city and seed (``lorong demo`` restarted with another ``--bins``). Without
    it the shares are those of ``city.bins`` exactly (the scenarios).

    Raises:
        ValueError: ``catalogue`` smaller than ``city.bins``.
    """
    size = city.bins if catalogue is None else catalogue
    if size < city.bins:
        raise ValueError(f"{city.bins} bins: at most {size} in one run")
    rnd = random.Random(f"{seed}:place")
    sites = site_counts(city.sites, size)
    rnd.shuffle(sites)
    names = list(city.kecamatan)
    city_byte = zlib.crc32(city.name.encode()) & 0xFF
    out = []
    for i in range(city.bins):
        kec = names[i % len(names)]
        lat, lon = city.kecamatan[kec]
        lorawan = i % 2 == 0
        prof = SITES[sites[i]]
        out.append(SimBin(
            index=i, device_id=f"24E124{city_byte:02X}{i:08X}" if lorawan else f"{city.id_prefix}-BIN-{i:04d}",
            lorawan=lorawan, site=sites[i], kecamatan=kec,
            lat=round(lat + rnd.uniform(-city.spread_deg, city.spread_deg), 6),
            lon=round(lon + rnd.uniform(-city.spread_deg, city.spread_deg), 6),
            depth_mm=rnd.choice([1000.0, 1100.0, 1200.0]), blind_zone_mm=150.0,
            daily_fill=prof.daily_fill * math.exp(rnd.gauss(0, FILL_SIGMA) - FILL_SIGMA**2 / 2),
            phase_s=rnd.uniform(0, STEP_S), level0=rnd.uniform(0.0, 0.55),
            battery0=rnd.uniform(35, 100), drain_per_day=rnd.uniform(0.05, 0.4),
            temp_offset=rnd.uniform(-0.5, 0.5)))
    return out


def grow_bags(b: SimBin, city: CityConfig, seed: int, t0: float, t_last: float) -> None:
    """Fill ``b.bag_t``/``b.bag_s`` with the bags thrown in from ``t0`` to ``t_last`` (epoch s): per 10-min step a
    Poisson number of bags, mean = daily fill x diurnal share x weekday factor / mean bag size."""
    rnd = random.Random(f"{seed}:bags:{b.index}")
    prof = SITES[b.site]
    weights = sum(prof.diurnal)
    tz = city.tzinfo()
    mean_bag = (BAG_MIN + BAG_MAX) / 2
    k, t = 0, t0
    while t < t_last:
        local = datetime.fromtimestamp(t, tz)
        lam = b.daily_fill * prof.diurnal[local.hour] / weights / 6 * prof.weekday[local.weekday()] / mean_bag
        for ts in sorted(t + rnd.uniform(0, STEP_S) for _ in range(poisson(rnd, lam))):
            b.bag_t.append(ts)
            b.bag_s.append(rnd.uniform(BAG_MIN, BAG_MAX))
        k += 1
        t = t0 + k * STEP_S


def counterfactual(b: SimBin, level: float, t_from: float, th: Thresholds) -> tuple[float | None, float | None]:
    """When the bin, left alone from ``t_from`` at ``level``, would cross ``th.full`` and ``th.overflow``
    (epoch s, each ``None`` if not within :data:`CF_HORIZON_S`); a threshold already reached gives ``t_from``."""
    cross = t_from if level >= th.full else None
    over = t_from if level >= th.overflow else None
    i = bisect.bisect_right(b.bag_t, t_from)
    limit = t_from + CF_HORIZON_S
    while (cross is None or over is None) and i < len(b.bag_t) and b.bag_t[i] <= limit:
        level = min(1.0, level + b.bag_s[i])
        if cross is None and level >= th.full:
            cross = b.bag_t[i]
        if over is None and level >= th.overflow:
            over = b.bag_t[i]
        i += 1
    return cross, over


@dataclass
class _Fill:
    """Output of :func:`fill_bin`: the true level at each reading time and the truth rows of one bin."""

    levels: list[float]
    pickups: list[dict[str, Any]]
    cycles: list[dict[str, Any]]
    crossings: list[tuple[float, float | None, float, float]]  # (cross_at, end or None, cycle start, near_at)
    overflow_s: float
    soon_lookalikes: list[tuple[float, float]]  # (pickup, counterfactual cross_at) within 6 h
    near_only: list[tuple[float, float | None]] = field(default_factory=list)
    """(near_at, end or None) of the cycles that came within the sensor's accuracy of the threshold without
    crossing it (:func:`accuracy_level`)."""


def accuracy_level(b: SimBin) -> float:
    """The bin's level accuracy, fraction 0..1: :data:`ACCURACY_MM` over its measuring range (depth less
    blind zone), 0.0125 for a 1,000 mm bin with a 200 mm blind zone."""
    return ACCURACY_MM / (b.depth_mm - b.blind_zone_mm)


def fill_bin(b: SimBin, stops: list[Stop], read_t: list[float], t0: float, t_end: float, th: Thresholds) -> _Fill:
    """Run one bin's fill through its bags and pickups; the levels are those at ``read_t``.

    Each cycle also notes when its level first came within the sensor's accuracy of the full threshold
    (``th.full - accuracy_level(b)``, ``near``): from then on the readings cannot tell the bin from a full one.
    """
    levels: list[float] = []
    out = _Fill(levels, [], [], [], 0.0, [])
    level, c_start, c_level = b.level0, t0, b.level0
    crossed: float | None = None
    near_line = th.full - accuracy_level(b)
    near: float | None = t0 if level >= near_line else None
    over_since: float | None = t0 if level >= th.overflow else None
    bi, si = 0, 0
    nb = bisect.bisect_left(b.bag_t, t_end)

    def close(t: float, picked: bool) -> None:
        nonlocal over_since
        cross, over = counterfactual(b, level, t, th)
        counterfact = crossed is None
        if crossed is not None:
            cross = crossed
        if over_since is not None:
            over = over_since if over is None or over_since < over else over
            out.overflow_s += t - max(over_since, t0)
            over_since = None
        out.cycles.append({"device_id": b.device_id, "start": iso(c_start), "end": iso(t),
                           "level_start": round(c_level, 4), "cross_at": iso(cross) if cross is not None else None,
                           "overflow_at": iso(over) if over is not None else None, "picked": picked})
        if crossed is not None:
            out.crossings.append((crossed, t if picked else None, c_start, near if near is not None else crossed))
        elif near is not None:
            out.near_only.append((near, t if picked else None))
        if counterfact and picked and cross is not None and cross - t < 6 * 3600:
            out.soon_lookalikes.append((t, cross))

    for rt in [*read_t, t_end]:
        while True:
            tb = b.bag_t[bi] if bi < nb else math.inf
            ts = stops[si].t if si < len(stops) and stops[si].t < t_end else math.inf
            if min(tb, ts) > rt:
                break
            if tb <= ts:
                new = min(1.0, level + b.bag_s[bi])
                if crossed is None and level < th.full <= new:
                    crossed = tb
                if near is None and new >= near_line:
                    near = tb
                if over_since is None and new >= th.overflow:
                    over_since = tb
                level = new
                bi += 1
                continue
            stop = stops[si]
            si += 1
            if stop.outcome == "skip":
                continue
            before = level
            after = min(before, stop.param) if stop.outcome == "full" else before * stop.param
            out.pickups.append({"device_id": b.device_id, "at": iso(stop.t), "level_before": round(before, 4),
                                "level_after": round(after, 4), "partial": stop.outcome == "partial",
                                "required": before - after >= th.pickup_min_drop})
            close(stop.t, True)
            level, c_start, c_level, crossed = after, stop.t, after, None
            near = stop.t if after >= near_line else None
        if rt < t_end:
            levels.append(level)
    close(t_end, False)
    return out


@dataclass(frozen=True)
class Stop:
    """A truck's visit to a bin: time (epoch s), ``outcome`` ``full``/``partial``/``skip`` and its
    parameter (the level left for ``full``, the fraction left for ``partial``)."""

    t: float
    outcome: str
    param: float


@dataclass
class RoundPlan:
    """The fixed rounds: stops per bin index (time order) and km driven in all."""

    stops: list[list[Stop]]
    km: float


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance, km, between two (lat, lon) points in degrees (mean Earth radius 6371 km)."""
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def truck_routes(depot: tuple[float, float], points: list[tuple[float, float]], trucks: int) -> list[list[int]]:
    """Split bins by angle around the depot into ``trucks`` sectors of equal size, each ordered by nearest
    neighbour from the depot (computed once; the fixed policy drives it every round day)."""
    by_angle = sorted(range(len(points)), key=lambda i: (math.atan2(points[i][0] - depot[0],
                                                                     points[i][1] - depot[1]), i))
    n, routes = len(points), []
    for k in range(trucks):
        left = set(by_angle[k * n // trucks:(k + 1) * n // trucks])
        route, here = [], depot
        while left:
            nxt = min(left, key=lambda i: (haversine_km(here, points[i]), i))
            left.remove(nxt)
            route.append(nxt)
            here = points[nxt]
        routes.append(route)
    return routes


def plan_rounds(city: CityConfig, seed: int, days: int, points: list[tuple[float, float]]) -> RoundPlan:
    """Fixed rounds: on every round weekday the trucks leave the depot (mean of the kecamatan centroids) at
    ``rounds.start`` local +-10 min and visit their bins; each stop is the previous one + travel
    (haversine km / ``speed_kmh``) + ``service_min``. Outcomes drawn per stop: skip, partial, full."""
    rnd = random.Random(f"{seed}:rounds")
    rc = city.rounds
    cents = list(city.kecamatan.values())
    depot = (sum(c[0] for c in cents) / len(cents), sum(c[1] for c in cents) / len(cents))
    routes = truck_routes(depot, points, min(rc.trucks, max(1, len(points))))
    plan = RoundPlan([[] for _ in points], 0.0)
    hh, mm = (int(x) for x in rc.start.split(":"))
    local0 = city.start.astimezone(city.tzinfo())
    t_start, t_end = city.start.timestamp(), (city.start + timedelta(days=days)).timestamp()
    for d in range(days + 1):  # a start after the round's time of day: the last round is on day `days`
        day = (local0 + timedelta(days=d)).replace(hour=hh, minute=mm, second=0, microsecond=0)
        if day.weekday() not in rc.weekdays or day.timestamp() - 600 >= t_end:
            continue
        for route in routes:
            t = day.timestamp() + rnd.uniform(-600, 600)
            if t < t_start or t >= t_end:
                continue  # a round that left before the city's start or after its end: not in the scenario
            here = depot
            for i in route:
                km = haversine_km(here, points[i])
                plan.km += km
                t += km / rc.speed_kmh * 3600 + rc.service_min * 60
                here = points[i]
                u = rnd.random()
                if u < rc.skip_prob:
                    plan.stops[i].append(Stop(t, "skip", 0.0))
                elif u < rc.skip_prob + rc.partial_prob:
                    plan.stops[i].append(Stop(t, "partial", rnd.uniform(0.25, 0.45)))
                else:
                    plan.stops[i].append(Stop(t, "full", rnd.uniform(0.0, 0.03)))
            if route:
                plan.km += haversine_km(here, depot)
    return plan


Span = tuple[float, float]


@dataclass
class Fire:
    """A fire in a native bin: ignition (epoch s), rise degC per 10 min, peak degC, extinction (epoch s),
    cooling degC per 10 min after extinction."""

    kind: str
    ignite: float
    rise: float
    peak: float
    extinguish: float
    cool: float


@dataclass
class FaultPlan:
    """The injected faults per bin index (times epoch s) and the truth rows known before emission."""

    offline: dict[int, list[Span]] = field(default_factory=dict)
    stuck: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # (start, readings)
    tilt: dict[int, list[Span]] = field(default_factory=dict)
    lid: dict[int, list[Span]] = field(default_factory=dict)
    lid_blip: dict[int, list[float]] = field(default_factory=dict)
    fire: dict[int, Fire] = field(default_factory=dict)
    sun: dict[int, float] = field(default_factory=dict)  # midday excess, degC
    rejects: dict[int, float] = field(default_factory=dict)  # burst start
    events: list[dict[str, Any]] = field(default_factory=list)
    lookalikes: list[dict[str, Any]] = field(default_factory=list)


def plan_faults(city: CityConfig, seed: int, t0: float, t_end: float, bins: list[SimBin]) -> FaultPlan:
    """Pick the bins and stretches of every fault kind of ``city.faults`` (distinct bins while they last).

    Durations (our choice, within SCENARIO.md's ranges): stuck 6-11 readings for the first stretch (too
    short to be required), 13-48 readings for the others; offline 40-44 min for the first, 45 min - 6 h
    for the others; tilt 30 min - 1 day; lid open 30 min - 4 h; fast fire +5..10 degC per 10 min to
    80-150 degC; smouldering +0.5..1.5 degC per 10 min to 45-70 degC. Low-battery bins start at 20.7-21.5 %
    and lose 0.8-1.5 % a day.
    """
    rnd = random.Random(f"{seed}:faults")
    f = city.faults
    plan = FaultPlan()
    native = [b.index for b in bins if not b.lorawan]
    anyb = [b.index for b in bins]
    rnd.shuffle(native)
    rnd.shuffle(anyb)
    used: set[int] = set()

    def take(pool: list[int]) -> int | None:
        for i in pool:
            if i not in used:
                used.add(i)
                return i
        return rnd.choice(pool) if pool else None  # more faults than bins: share a bin

    def when(dur: float) -> float:
        lo, hi = t0 + 3 * 3600, t_end - dur - 3600
        return rnd.uniform(lo, max(lo, hi))

    def event(etype: str, i: int, s: float, e: float | None, what: str, required: bool = True,
              **info: Any) -> None:
        plan.events.append({"type": etype, "device_id": bins[i].device_id, "start": iso(s),
                            "end": iso(e) if e is not None else None, "required": required, "what": what,
                            "info": info})

    for kind, n in (("fast", f.fire_fast), ("smouldering", f.fire_smouldering)):
        for _ in range(n):
            if (i := take(native)) is None:
                break
            fast = kind == "fast"
            rise = rnd.uniform(5, 10) if fast else rnd.uniform(0.5, 1.5)
            peak = rnd.uniform(80, 150) if fast else rnd.uniform(45, 70)
            hold = rnd.uniform(600, 2400) if fast else rnd.uniform(3600, 3 * 3600)
            length = (peak - 30) / rise * STEP_S + hold
            s = when(length)
            fire = Fire(kind, s, rise, peak, s + length, 10.0 if fast else 2.0)
            plan.fire[i] = fire
            event("fire", i, s, fire.extinguish, f"{kind} fire, peak {peak:.0f} degC", kind=kind)
    for _ in range(f.lid_open):
        if (i := take(native)) is not None:
            dur = rnd.uniform(1800, 4 * 3600)
            s = when(dur)
            plan.lid.setdefault(i, []).append((s, s + dur))
            event("lid_open", i, s, s + dur, "lid left open")
    for _ in range(f.lid_blips):
        if (i := take(native)) is not None:
            plan.lid_blip.setdefault(i, []).append(when(600))
    for _ in range(f.sun_heated):
        if (i := take(native)) is not None:
            plan.sun[i] = rnd.uniform(6, 10)
    for _ in range(f.payload_rejects):
        if (i := take(native)) is not None:
            plan.rejects[i] = when(3600)
    for k in range(f.stuck):
        if (i := take(anyb)) is not None:
            n = rnd.randint(6, 11) if k == 0 else rnd.randint(13, 48)
            plan.stuck.setdefault(i, []).append((when(n * STEP_S), n))
    for k in range(f.offline):
        if (i := take(anyb)) is not None:
            dur = rnd.uniform(2400, 2640) if k == 0 else rnd.uniform(2700, 6 * 3600)
            s = when(dur)
            plan.offline.setdefault(i, []).append((s, s + dur))
            event("offline", i, s, s + dur, f"no uplinks for {dur / 60:.0f} min", dur >= 2700)
    for _ in range(f.tilt):
        if (i := take(anyb)) is not None:
            dur = rnd.uniform(1800, 86400)
            s = when(dur)
            plan.tilt.setdefault(i, []).append((s, s + dur))
            event("tilt", i, s, s + dur, "sensor knocked askew")
    for _ in range(f.low_battery):
        if (i := take(anyb)) is not None:
            bins[i].battery0 = 20.5 + rnd.uniform(0.2, 1.0)
            bins[i].drain_per_day = rnd.uniform(0.8, 1.5)
    return plan


def ms_iso(t: float) -> str:
    """Epoch seconds as ISO-8601 UTC text with milliseconds (message times)."""
    return datetime.fromtimestamp(round(t, 3), UTC).isoformat(timespec="milliseconds")


def temperature(b: SimBin, t: float, hour: float, plan: FaultPlan) -> float:
    """True temperature in the bin, degC: 26-33 degC over the day (minimum 03:00, maximum 15:00 local; our
    reading of Makassar's climate), plus sun heating at midday for sun-heated bins, or a fire's curve."""
    temp = 29.5 + 3.5 * math.sin(2 * math.pi * (hour - 9) / 24) + b.temp_offset
    if b.index in plan.sun and 9 < hour < 17:
        temp += plan.sun[b.index] * math.sin(math.pi * (hour - 9) / 8)
    fire = plan.fire.get(b.index)
    if fire is not None and t >= fire.ignite:
        if t <= fire.extinguish:
            curve = min(fire.peak, temp + fire.rise * (t - fire.ignite) / STEP_S)
        else:
            curve = fire.peak - fire.cool * (t - fire.extinguish) / STEP_S
        temp = max(temp, curve)
    return temp


def _inside(spans: list[Span] | None, t: float) -> bool:
    return spans is not None and any(s <= t < e for s, e in spans)


def sensor_mm(b: SimBin, level: float, rnd: random.Random) -> int:
    """The distance, whole mm, an ultrasonic sensor reads over a true fill ``level`` (0..1): depth - level x
    (depth - blind zone) + uniform +-10 mm (EM310-UDL accuracy +-1 cm, Milesight datasheet), clipped to
    [blind zone - 20, depth + 30] mm. One draw from ``rnd``."""
    dist = b.depth_mm - level * (b.depth_mm - b.blind_zone_mm) + rnd.uniform(-ACCURACY_MM, ACCURACY_MM)
    return max(1, round(min(max(dist, b.blind_zone_mm - 20), b.depth_mm + 30)))


def registry_row(b: SimBin, installed: str) -> dict[str, Any]:
    """The registry row of a bin (fields of ``devices.registry.DeviceIn``); ``installed`` ISO-8601 text."""
    return {"id": b.device_id, "kind": "bin", "model": "EM310-UDL" if b.lorawan else "LRG-US1",
            "codec": "milesight-em310-udl" if b.lorawan else None, "lat": b.lat, "lon": b.lon,
            "kecamatan": b.kecamatan, "street": f"{SITES[b.site].label} {b.kecamatan} {b.index}",
            "depth_mm": b.depth_mm, "blind_zone_mm": b.blind_zone_mm, "capacity_l": 660.0,
            "waste_kind": "campuran", "report_interval_s": STEP_S, "installed_at": installed}


def emit_bin(b: SimBin, city: CityConfig, read_t: list[float], levels: list[float], plan: FaultPlan, seed: int,
             th: Thresholds, res: BinsResult) -> list[Span]:
    """Turn one bin's true levels into uplinks (appended to ``res.messages``) with its faults, and add the
    truth known only from what was sent (stuck, low_battery, payload_rejects, look-alikes).

    Sensor distance: :func:`sensor_mm`. Battery in whole %.
    Temperatures above 125 degC read 125 (the sensor's range, ``lorong.core.metrics``).

    Returns:
        the stuck stretches as they were sent (first stuck reading, first fresh reading), epoch s.
    """
    rnd = random.Random(f"{seed}:sensor:{b.index}")
    i, dev, tz = b.index, b.device_id, city.tzinfo()
    stuck: dict[int, int] = {}  # reading index -> index of the stuck value
    spans: list[Span] = []
    for start, n in plan.stuck.get(i, []):
        a = bisect.bisect_left(read_t, start)
        for k in range(a, min(a + n, len(read_t))):
            stuck[k] = a
        if a < len(read_t):
            end = read_t[a + n] if a + n < len(read_t) else read_t[-1] + STEP_S
            spans.append((read_t[a], end))
            res.events.append({"type": "stuck", "device_id": dev, "start": iso(read_t[a]), "end": iso(end),
                               "required": n >= th.stuck_readings + 1, "what": f"{n} identical readings",
                               "info": {"readings": n}})
    blips = {bisect.bisect_left(read_t, t) for t in plan.lid_blip.get(i, [])}
    bags: set[int] = set()
    day0 = datetime.fromtimestamp(read_t[0], tz).replace(hour=0, minute=0, second=0, microsecond=0) if read_t else None
    for d in range(city.days + 1):
        if day0 is not None and rnd.random() < city.faults.bag_over_sensor_per_bin_day:
            at = (day0 + timedelta(days=d, hours=rnd.uniform(7, 20))).timestamp()
            k = bisect.bisect_left(read_t, at)
            if k < len(read_t) and levels[k] < 0.7 and k not in stuck and not _inside(plan.offline.get(i), read_t[k]):
                bags.add(k)
    gw = f"gw-{city.id_prefix.lower()}-{list(city.kecamatan).index(b.kecamatan) + 1:02d}"
    app = f"lorong-{city.id_prefix.lower()}@ttn"
    rssi = rnd.randint(-115, -85)
    low_seen = False
    distances: list[int] = []
    for k, (t, level) in enumerate(zip(read_t, levels, strict=True)):
        dist_mm = sensor_mm(b, level, rnd)
        distances.append(dist_mm)
        if k in stuck:
            dist_mm = distances[stuck[k]]
        if k in bags:
            dist_mm = round(rnd.uniform(160, 320))
            res.lookalikes.append({"type": "bin_full", "device_id": dev, "at": iso(t),
                                   "what": "bag held over the sensor (one reading)"})
            if k + 1 < len(read_t):
                res.lookalikes.append({"type": "pickup", "device_id": dev, "at": iso(read_t[k + 1]),
                                       "what": "level drop after a bag held over the sensor"})
        if _inside(plan.offline.get(i), t):
            continue
        battery = max(0, min(100, round(b.battery0 - b.drain_per_day * (t - read_t[0]) / 86400)))
        if not low_seen and battery / 100 <= th.battery_low:
            low_seen = True
            res.events.append({"type": "low_battery", "device_id": dev, "start": iso(t), "end": None,
                               "required": True, "what": f"battery reads {battery} %", "info": {}})
        tilt = _inside(plan.tilt.get(i), t)
        if b.lorawan:
            ns = t + rnd.uniform(0.05, 0.4)
            topic, payload = ttn_v3_uplink(dev, k + 1, encode_em310_udl(dist_mm, battery, tilt), ms_iso(ns),
                                           ((gw, rssi + rnd.randint(-3, 3)),), app=app)
            rx = ns + rnd.uniform(0.2, 1.2)
            res.messages.append((rx, topic, payload))
            if rnd.random() < city.faults.duplicate_share:
                gws = ((gw, rssi), (f"{gw}b", rssi - rnd.randint(3, 12)))
                topic2, payload2 = ttn_v3_uplink(dev, k + 1, encode_em310_udl(dist_mm, battery, tilt), ms_iso(ns),
                                                 gws, app=app)
                res.messages.append((rx + rnd.uniform(0.1, 0.9), topic2, payload2))
                res.lookalikes.append({"type": "duplicate", "device_id": dev, "at": iso(t),
                                       "what": "LoRa uplink heard by a second gateway"})
            continue
        local = datetime.fromtimestamp(t, tz)
        temp = temperature(b, t, local.hour + local.minute / 60, plan) + rnd.uniform(-0.2, 0.2)
        lid = _inside(plan.lid.get(i), t) or k in blips
        if k in blips:
            res.lookalikes.append({"type": "lid_open", "device_id": dev, "at": iso(t),
                                   "what": "lid open for one reading"})
        topic, payload = lorong_json_uplink(dev, ms_iso(t), k + 1, {
            "distance": {"value": dist_mm, "unit": "mm"}, "batteryLevel": {"value": battery, "unit": "%"},
            "temperature": {"value": round(min(temp, 125.0), 1), "unit": "degC"},
            "tilt": int(tilt), "lidOpen": int(lid)})
        res.messages.append((t + rnd.uniform(0.05, 1.0), topic, payload))
    if i in plan.sun:
        for d in range(city.days):
            noon = (day0 + timedelta(days=d, hours=13)).timestamp() if day0 else 0.0
            res.lookalikes.append({"type": "fire", "device_id": dev, "at": iso(noon),
                                   "what": f"sun-heated bin, +{plan.sun[i]:.0f} degC at midday"})
    if i in plan.rejects and read_t:
        s, n = plan.rejects[i], rnd.randint(6, 9)
        rxs = [s + j * 300 + rnd.uniform(0, 1) for j in range(n)]
        for j, rx in enumerate(rxs):
            body = {"device_id": dev, "time": ms_iso(rx), "seq": 900000 + j,
                    "metrics": {"distance": {"value": f"{800 + j}mm", "unit": "mm"}}}
            res.messages.append((rx, f"lorong/v1/{dev}/up", json.dumps(body).encode()))
        res.events.append({"type": "payload_rejects", "device_id": dev, "start": iso(rxs[0]), "end": iso(rxs[-1]),
                           "required": True, "what": f"{n} malformed payloads (distance sent as text)",
                           "info": {"count": n}})
    return spans


def simulate_bins(city: CityConfig, seed: int, days: int, th: Thresholds) -> BinsResult:
    """Simulate the city's bins for ``days`` days from ``city.start`` (``city.days`` is ignored here).

    Returns:
        :class:`BinsResult`; messages carry rx times (epoch s), the rest is SCENARIO.md-shaped.
    """
    city = city.model_copy(update={"days": days})
    t0 = city.start.timestamp()
    t_end = (city.start + timedelta(days=days)).timestamp()
    bins = place_bins(city, seed)
    for b in bins:
        grow_bags(b, city, seed, t0, t_end + CF_HORIZON_S + STEP_S)
    plan = plan_rounds(city, seed, days, [(b.lat, b.lon) for b in bins])
    faults = plan_faults(city, seed, t0, t_end, bins)
    installed = (city.start - timedelta(days=30)).isoformat()
    res = BinsResult([], [], [], [], [], [], {})
    overflow_s, at_pickup = 0.0, []
    for b in bins:
        res.devices.append(registry_row(b, installed))
        read_t = [t0 + b.phase_s + n * STEP_S for n in range(math.ceil((t_end - t0 - b.phase_s) / STEP_S))]
        fill = fill_bin(b, plan.stops[b.index], read_t, t0, t_end, th)
        overflow_s += fill.overflow_s
        at_pickup += [p["level_before"] for p in fill.pickups]
        stuck = emit_bin(b, city, read_t, fill.levels, faults, seed, th, res)
        _bin_truth(b, fill, faults.offline.get(b.index, []), stuck, t0, t_end, th, res)
    res.events += faults.events
    res.lookalikes += faults.lookalikes
    res.routes = {"policy": city.rounds.policy, "km": round(plan.km, 1),
                  "overflow_bin_hours": round(overflow_s / 3600, 2),
                  "mean_fill_at_emptying": round(sum(at_pickup) / len(at_pickup), 4) if at_pickup else 0.0,
                  "stops": len(at_pickup)}
    return res


def _bin_truth(b: SimBin, fill: _Fill, offline: list[Span], stuck: list[Span], t0: float, t_end: float,
               th: Thresholds, res: BinsResult) -> None:
    """Add one bin's bin_full / bin_full_soon events, look-alikes, pickups and cycles to ``res``; those a
    stuck or offline sensor hides are ``required: false``."""

    def seen(start: float, stop: float | None, cross: float) -> bool:
        return not (any(s <= cross < e for s, e in offline)
                    or any(s < (stop if stop is not None else t_end) and start < e for s, e in stuck))

    for p in fill.pickups:
        at = datetime.fromisoformat(p["at"]).timestamp()
        p["required"] = p["required"] and not any(s <= at < e for s, e in [*offline, *stuck])
    for near, stop in fill.near_only:
        res.events.append({"type": "bin_full", "device_id": b.device_id, "start": iso(near),
                           "end": iso(stop) if stop is not None else None, "required": False,
                           "what": f"true fill level within the sensor's accuracy (+-{ACCURACY_MM:.0f} mm) of "
                                   f"{th.full:.2f}, not above it", "info": {}})
    for cross, stop, c_start, near in fill.crossings:
        ok = seen(cross, stop, cross)
        full_s = stop - cross if stop is not None else None
        brief = full_s is not None and full_s < BRIEF_FULL_S
        late = stop is None and t_end - cross < BRIEF_FULL_S  # confirmed on readings after the scenario's end
        res.events.append({"type": "bin_full", "device_id": b.device_id, "start": iso(cross),
                           "end": iso(stop) if stop is not None else None, "required": ok and not brief and not late,
                           "what": f"true fill level crossed {th.full:.2f}"
                                   + (f", emptied {full_s / 60:.0f} min later" if full_s is not None and brief else "")
                                   + (f", {(t_end - cross) / 60:.0f} min before the scenario's end" if late else ""),
                           "info": {"match_from": iso(near)} if near < cross else {}})
        foreseeable = cross - c_start >= 3600 and cross - t0 >= 3 * 3600
        # a fill that needs nobody (its truck was already on the way) needs no warning before it either
        res.events.append({"type": "bin_full_soon", "device_id": b.device_id, "start": iso(c_start),
                           "end": iso(cross), "required": foreseeable and not brief and seen(c_start, cross, cross),
                           "what": "fill cycle crosses the full threshold before its pickup"
                                   + ("" if foreseeable else " (within an hour of its start, or of the scenario's)")
                                   + (f" (emptied {full_s / 60:.0f} min after: its truck was already on the way)"
                                      if full_s is not None and brief else ""),
                           "info": {"cross_at": iso(cross)}})
    for picked, cross in fill.soon_lookalikes:
        res.lookalikes.append({"type": "bin_full_soon", "device_id": b.device_id, "at": iso(picked),
                               "what": f"round reaches it {(cross - picked) / 3600:.1f} h before it fills"})
        if cross - picked < 3600:
            c_start = next(c["start"] for c in fill.cycles if c["end"] == iso(picked))
            res.events.append({"type": "bin_full_soon", "device_id": b.device_id, "start": c_start,
                               "end": iso(cross), "required": False,
                               "what": "pickup came less than an hour before the crossing",
                               "info": {"cross_at": iso(cross), "counterfactual": True}})
    last = fill.cycles[-1] if fill.cycles else None
    if last is not None and not last["picked"] and last["cross_at"] is not None and last["cross_at"] > last["end"]:
        res.events.append({"type": "bin_full_soon", "device_id": b.device_id, "start": last["start"],
                           "end": last["cross_at"], "required": False,
                           "what": "the scenario ends before this cycle's pickup or crossing",
                           "info": {"cross_at": last["cross_at"], "counterfactual": True}})
    res.pickups += fill.pickups
    res.cycles += fill.cycles
