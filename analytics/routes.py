"""Collection routes: full and soon-full bins ordered into vehicle routes (a capacitated VRP).

Model: one depot, ``vehicles`` identical trucks of ``capacity`` litres, each bin a stop whose
demand is its current waste volume (``fillingLevel x capacity_l``, litres, rounded up). Arc
costs are great-circle (haversine) distances in metres, a fair stand-in for street distance
inside a city when no road graph is at hand. Solved with Google OR-Tools' routing library
(``pywrapcp``: cheapest-arc start, guided local search within a time limit); a bin that fits no
truck is dropped at a penalty larger than any route, so the solver drops bins only when the
trucks are full, and the plan says which. A bin larger than one truck can never be collected, so
:func:`solve` refuses such a capacity (:class:`TruckTooSmall`) instead of dropping the bin, and
:func:`save` never replaces a day's saved plan with an empty one.

A plan is one city's (``city``): its bins, its rounds, and the day (in its time zone) of the round it
is for (:func:`plan_day`: made in the evening, for the next morning's round); saving it
replaces only that city's plan of the day, and its trucks are numbered from 0.

Which bins: those at or above their full threshold now, and those whose forecast
(``device_latest.derived.full_at``) falls before the next planned collection round could reach
them: its start, or, once the city's pickups show when the round usually reaches its last bin
(:func:`analytics.fillprofile.round_end`), that time on the round's day (a bin left out today
waits for tomorrow's truck, which may come hours after the round starts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from ortools.constraint_solver import pywrapcp, routing_enums_pb2
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from analytics import pickups
from analytics.fillprofile import round_end
from analytics.forecast import next_collection, round_day
from lorong.core.geo import EARTH_RADIUS_M, haversine_m
from lorong.core.model import DEFAULT_REPORT_INTERVAL_S, DeviceKind
from lorong.core.settings import AnalyticsSettings
from lorong.storage.tables import CityRow, DeviceLatestRow, DeviceRow, RoutePlanRow

__all__ = ["DEPOT_MAX_KM", "EARTH_RADIUS_M", "DepotTooFar", "Plan", "Route", "Stop", "TruckTooSmall", "bins_seen",
           "check_depot",
           "haversine_m", "plan_day", "save", "saved_routes", "select_stops", "solve"]
DEFAULT_BIN_L = 660.0
"""Volume assumed for a bin registered without ``capacity_l``: the EN 840 four-wheel 660 L
street container."""
DROP_PENALTY_M = 10_000_000
"""Cost of leaving a bin out (10,000 km): larger than any city route."""
DEPOT_MAX_KM = 100.0
"""Farthest a depot may be from its city's centre, km (great circle). A reasoned bound, not a tuned one:
a round is one shift of about 8 h (:data:`analytics.forecast.ROUND_H`, the round :func:`plan_day`
takes), and a depot 100 km out costs 200 km of empty driving a round, some 4 h at 50 km/h, half the
shift before the first bin; no city works so. Real depots sit far inside it: Jakarta's farthest, the
Bantar Gebang landfill in Bekasi, is about 26 km from the city's centre (Monas). Cities are far
outside it: Makassar's centre is about 1,400 km from Jakarta's, and the nearest two of the example
cities (Makassar, Banyuwangi) are 650 km apart; so a depot typed for the wrong city is refused
(:func:`check_depot`) instead of planning a route of thousands of km."""


class DepotTooFar(ValueError):
    """The depot is more than :data:`DEPOT_MAX_KM` from the city's centre (``km``, the distance)."""

    def __init__(self, message: str, km: float) -> None:
        super().__init__(message)
        self.km = km


def check_depot(session: Session, city: CityRow, depot: tuple[float, float],
                limit_km: float = DEPOT_MAX_KM) -> None:
    """Refuse a depot farther than ``limit_km`` from ``city``'s map centre (``(lat, lon)`` in WGS84
    degrees), or, for a city without one, from the mean position of its bins (as migration 0008 takes
    a migrated city's centre); a city with neither is not checked (it has no bins to route).

    Raises:
        DepotTooFar: naming the distance, the centre and the limit.
    """
    if city.centre_lat is not None and city.centre_lon is not None:
        centre, what = (city.centre_lat, city.centre_lon), f"the centre of {city.id}"
    else:
        q = select(func.avg(DeviceRow.lat), func.avg(DeviceRow.lon)).where(
            DeviceRow.city_id == city.id, DeviceRow.kind == DeviceKind.BIN.value, DeviceRow.status != "retired",
            DeviceRow.lat.is_not(None), DeviceRow.lon.is_not(None))
        lat, lon = session.execute(q).one()
        if lat is None or lon is None:
            return
        centre, what = (float(lat), float(lon)), f"the mean position of the bins of {city.id}"
    km = haversine_m(depot, centre) / 1000.0
    if km > limit_km:
        raise DepotTooFar(f"the depot {depot[0]:g},{depot[1]:g} is {km:.0f} km from {what} "
                          f"({centre[0]:.4f},{centre[1]:.4f}), more than the {limit_km:g} km a depot may be "
                          "from its city: is it another city's depot?", km)


@dataclass(frozen=True, slots=True)
class Stop:
    """A bin to empty: id, position (degrees), demand (litres, integer) and fill level."""

    device_id: str
    lat: float
    lon: float
    demand_l: int
    level: float | None = None


class TruckTooSmall(ValueError):
    """A bin holds more litres than one truck carries: no plan can collect it.

    Attributes:
        stop: the largest such bin (its ``demand_l`` in litres).
        capacity_l: the truck capacity asked for, litres.
    """

    def __init__(self, stop: Stop, capacity_l: int) -> None:
        super().__init__(f"bin {stop.device_id} holds {stop.demand_l} L, more than a truck's capacity of "
                         f"{capacity_l} L")
        self.stop = stop
        self.capacity_l = capacity_l


@dataclass
class Route:
    """One vehicle's route: stops in visiting order, load (litres) and length (km, depot to depot)."""

    vehicle: int
    stops: list[Stop]
    load_l: int
    distance_km: float


@dataclass
class Plan:
    """A solved plan: routes of the vehicles that drive, and the bins left out (no room)."""

    routes: list[Route]
    dropped: list[Stop] = field(default_factory=list)

    @property
    def distance_km(self) -> float:
        """Total length of all routes, km."""
        return sum(r.distance_km for r in self.routes)


def solve(depot: tuple[float, float], stops: Sequence[Stop], vehicles: int, capacity_l: int,
          time_limit_s: float = 2.0, local_optimum: bool = False) -> Plan:
    """Solve the capacitated VRP (see the module docstring).

    Args:
        depot: ``(lat, lon)`` of the depot, degrees.
        stops: bins to visit.
        vehicles: number of trucks, >= 1 (at most one per stop is used).
        capacity_l: litres each truck carries, >= 1.
        time_limit_s: search time limit, seconds.
        local_optimum: stop at the first local optimum (OR-Tools ``GREEDY_DESCENT``) instead of
            running guided local search until the time limit: the same stops then always give the
            same plan, whatever the machine's load (the simulated city's closed loop,
            ``firmware_sim/policy.py``, needs that), at routes a few per cent longer.

    Returns:
        The plan; routes only for trucks that leave the depot, numbered from 0.

    Raises:
        TruckTooSmall: a stop's demand exceeds ``capacity_l`` (names the largest stop).
        ValueError: no vehicle, no capacity, or the solver found no solution.
    """
    if vehicles < 1 or capacity_l < 1:
        raise ValueError("need at least one vehicle and a positive capacity")
    if not stops:
        return Plan([])
    largest = max(stops, key=lambda s: s.demand_l)
    if largest.demand_l > capacity_l:
        raise TruckTooSmall(largest, capacity_l)
    vehicles = min(vehicles, len(stops))  # a truck more than stops drives nothing (and costs the solver memory)
    points = [depot, *((s.lat, s.lon) for s in stops)]
    dist = [[round(haversine_m(p, q)) for q in points] for p in points]
    demand = [0, *(s.demand_l for s in stops)]
    manager = pywrapcp.RoutingIndexManager(len(points), vehicles, 0)
    model = pywrapcp.RoutingModel(manager)

    def arc(i: int, j: int) -> int:
        return dist[int(manager.IndexToNode(i))][int(manager.IndexToNode(j))]

    def load(i: int) -> int:
        return demand[int(manager.IndexToNode(i))]

    model.SetArcCostEvaluatorOfAllVehicles(model.RegisterTransitCallback(arc))
    model.AddDimensionWithVehicleCapacity(model.RegisterUnaryTransitCallback(load), 0, [capacity_l] * vehicles,
                                          True, "load")
    for node in range(1, len(points)):
        model.AddDisjunction([manager.NodeToIndex(node)], DROP_PENALTY_M)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    meta = routing_enums_pb2.LocalSearchMetaheuristic
    params.local_search_metaheuristic = meta.GREEDY_DESCENT if local_optimum else meta.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
    solution = model.SolveWithParameters(params)
    if solution is None:
        raise ValueError("the routing solver found no solution")
    routes: list[Route] = []
    visited: set[int] = set()
    for v in range(vehicles):
        idx, order = model.Start(v), []
        while not model.IsEnd(idx):
            node = manager.IndexToNode(idx)
            if node:
                order.append(node)
            idx = solution.Value(model.NextVar(idx))
        if not order:
            continue
        visited.update(order)
        path = [depot, *(points[n] for n in order), depot]
        km = sum(haversine_m(a, b) for a, b in pairwise(path)) / 1000.0
        routes.append(Route(len(routes), [stops[n - 1] for n in order], sum(demand[n] for n in order), km))
    dropped = [s for n, s in enumerate(stops, start=1) if n not in visited]
    return Plan(routes, dropped)


def collect_by(session: Session, cfg: AnalyticsSettings, now: datetime, city: str | None = None) -> datetime:
    """When the next round could reach a bin left out now (tz-aware): the next round's start
    (:func:`analytics.forecast.next_collection`), or the time the round usually reaches its last
    bin (:func:`analytics.fillprofile.round_end` of the pickups in the registry, of ``city``'s bins
    when given) on that day. ``cfg`` holds the city's rounds and zone (:func:`devices.cities.city_settings`)."""
    due = next_collection(now, cfg.collection_times, cfg.collection_weekdays, cfg.timezone)
    last = round_end((h.at for h in pickups.history(session, now, city=city).values()), cfg.timezone,
                     cfg.collection_times)
    if last is None:
        return due
    zone = ZoneInfo(cfg.timezone)
    local = due.astimezone(zone)
    return datetime.combine(local.date(), last, tzinfo=zone) if last > local.time() else due


def select_stops(session: Session, cfg: AnalyticsSettings, now: datetime, bin_l: float = DEFAULT_BIN_L,
                 city: str | None = None) -> list[Stop]:
    """Bins to collect: full now, or forecast full before the next round reaches them
    (:func:`collect_by`; see the module docstring); the bins of ``city`` only when given, with
    ``cfg`` that city's settings (its rounds and zone).

    Bins without a position are skipped (they cannot be routed).
    """
    due = collect_by(session, cfg, now, city)
    q = (select(DeviceRow, DeviceLatestRow).join(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id)
         .where(DeviceRow.kind == DeviceKind.BIN.value, DeviceRow.status == "active")
         .order_by(DeviceRow.id))
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    out: list[Stop] = []
    for dev, latest in session.execute(q).tuples():
        if dev.lat is None or dev.lon is None:
            continue
        pair = (latest.metrics or {}).get("fillingLevel")
        level = float(pair[0]) if isinstance(pair, list) and pair else None
        full_at = (latest.derived or {}).get("full_at")
        soon = isinstance(full_at, str) and datetime.fromisoformat(full_at) <= due
        if (level is not None and level >= (dev.full_threshold or cfg.full_threshold)) or soon:
            volume = dev.capacity_l or bin_l
            out.append(Stop(dev.id, dev.lat, dev.lon, max(1, math.ceil((level or 0.0) * volume)), level))
    return out


def bins_seen(session: Session, city: str | None = None) -> tuple[int, int]:
    """``(active bins, those the analytics job has a reading of)`` of ``city`` (every city when None):
    a plan of bins the job has never seen (``device_latest`` has no row for any) has nothing to go on."""
    q = (select(func.count(DeviceRow.id), func.count(DeviceLatestRow.device_id))
         .outerjoin(DeviceLatestRow, DeviceLatestRow.device_id == DeviceRow.id))
    active, seen = session.execute(q.where(*_active_bins(city))).one()
    return int(active), int(seen)


def _active_bins(city: str | None) -> list[ColumnElement[bool]]:
    """The conditions of the active bins (of ``city`` when given)."""
    conds = [DeviceRow.kind == DeviceKind.BIN.value, DeviceRow.status == "active"]
    return conds if city is None else [*conds, DeviceRow.city_id == city]


def stale_since(session: Session, cfg: AnalyticsSettings, now: datetime, city: str | None = None) -> datetime | None:
    """The newest reading of the active bins (of ``city`` when given) when even it is older than
    ``offline_factor`` report intervals (the longest of those bins; the ``offline`` rule's limit), else None.

    Every bin silent that long is not a fleet of broken sensors but a stopped ingester or InfluxDB: a
    plan made then uses the levels and forecasts of that time.

    Args:
        session: the registry.
        cfg: the city's settings (``offline_factor``).
        now: the planning time, tz-aware.
        city: the city id, or None for every bin.

    Returns:
        The newest reading's time (UTC), or None when it is recent or there are no readings.
    """
    q = (select(func.max(DeviceLatestRow.ts), func.max(DeviceRow.report_interval_s))
         .join(DeviceRow, DeviceRow.id == DeviceLatestRow.device_id))
    newest, interval = session.execute(q.where(*_active_bins(city))).one()
    if newest is None:
        return None
    limit = timedelta(seconds=cfg.offline_factor * float(interval or DEFAULT_REPORT_INTERVAL_S))
    return newest if now - newest > limit else None


def plan_day(now: datetime, cfg: AnalyticsSettings) -> str:
    """The day (``YYYY-MM-DD`` in the city's zone) a plan made at ``now`` (tz-aware) is for, its key: the
    day of the round under way or the next one (:func:`analytics.forecast.round_day` of ``cfg``'s rounds),
    so a plan made in the evening is for the next morning's round."""
    return round_day(now, cfg.collection_times, cfg.collection_weekdays, cfg.timezone)


def _of_day(day: str, city: str | None) -> list[Any]:
    """SQL conditions of the plans of ``day`` of ``city`` (``None``: of every city)."""
    return [RoutePlanRow.day == day, *([RoutePlanRow.city_id == city] if city is not None else [])]


def saved_routes(session: Session, day: str, city: str | None = None) -> int:
    """How many vehicle routes are saved for ``day`` (``YYYY-MM-DD``), of ``city`` (``None``: every city)."""
    return len(session.scalars(select(RoutePlanRow.vehicle).where(*_of_day(day, city))).all())


def save(session: Session, plan: Plan, now: datetime, cfg: AnalyticsSettings, depot: tuple[float, float],
         capacity_l: int, city: str | None = None) -> str:
    """Replace the plans of the day it is for (:func:`plan_day`, with ``cfg`` the city's settings) of
    ``city`` with ``plan``; the caller commits. ``city`` ``None`` (a registry of one city) replaces the
    day's plans of every city.
    Vehicles are numbered from 0 in each city.

    A plan without routes (nothing to collect, or nothing fitted) changes nothing: the day's saved
    plan, if any, is kept, so a mistaken re-run cannot wipe a good plan.

    Each vehicle's ``stops`` JSON: ``{"stops": [{device_id, lat, lon, fillingLevel, demand_l}],
    "load_l", "capacity_l", "depot": [lat, lon]}``.

    Returns:
        The day, ``YYYY-MM-DD``.
    """
    day = plan_day(now, cfg)
    if not plan.routes:
        return day
    session.execute(delete(RoutePlanRow).where(*_of_day(day, city)))
    for r in plan.routes:
        stops: dict[str, Any] = {
            "stops": [{"device_id": s.device_id, "lat": s.lat, "lon": s.lon, "fillingLevel": s.level,
                       "demand_l": s.demand_l} for s in r.stops],
            "load_l": r.load_l, "capacity_l": capacity_l, "depot": list(depot)}
        session.add(RoutePlanRow(day=day, city_id=city, vehicle=r.vehicle, stops=stops,
                                 distance_km=round(r.distance_km, 3), created_at=now))
    session.flush()
    return day
