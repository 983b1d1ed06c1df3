"""``/routes``: the day's planned collection routes (``route_plans``, written by analytics).

A plan's ``stops`` JSON is what :func:`analytics.routes.save` writes, ``{"stops": [{device_id, lat,
lon, fillingLevel, demand_l}], "load_l", "capacity_l", "depot": [lat, lon]}``, read leniently: a
list, or a dict holding the list under ``stops``, ``device_ids`` or ``order``; each stop is a device
id or a dict with ``device_id`` or ``id``.
Each stop is joined with the registry (location), ``device_latest`` (current fill level and rate),
the day's collections (``emptiedAt``) and an active ``cant_empty`` alert (``problem``); the stops
still to do get an arrival time and the level expected then (:func:`arrivals`).

Plans are per city (``route_plans.city_id``); by default a city's plan of the round day in effect
(:func:`analytics.forecast.round_day`: a plan made in the evening for the next morning's round is
shown from then on), else of its "today" (its date in its own time zone). A stop is done
(``emptiedAt``) by an emptying (sensor pickup or crew report) after its plan was made
(``route_plans.created_at``): this morning's pickups do not tick off a plan made tonight.
A token scoped to a city gets its city's plans only.
A bin taken out of service since the plan was made (registry status not ``active``) is left out, the
other stops keeping their ``order``.
A token with an area (:mod:`api.auth`) gets the stops in its area only, each keeping its place
(``order``) and arrival time in the whole route, and no route without a stop there.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from sqlalchemy import and_, or_, select

from analytics.forecast import round_day, round_start
from api.deps import ContextDep, Reader, SessionDep
from api.errors import InvalidRequest
from api.query import resolve_city
from api.schemas import ERRORS, RouteOut, RouteStopOut
from api.state import emptied_since, metric_value, number, rate
from devices.cities import city_settings
from lorong.core.alerts import CANT_EMPTY
from lorong.core.geo import haversine_m
from lorong.core.metrics import shown
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.tables import AlertRow, CityRow, CollectionRow, DeviceLatestRow, DeviceRow, RoutePlanRow

router = APIRouter(prefix="/routes", tags=["routes"], responses=ERRORS)

WITA = timezone(timedelta(hours=8), "WITA")
"""Waktu Indonesia Tengah (Asia/Makassar), UTC+8 all year (Indonesia keeps no daylight saving)."""


def today_wita(now: datetime | None = None) -> str:
    """Today's date in Makassar, ``YYYY-MM-DD``."""
    return (now or utcnow()).astimezone(WITA).date().isoformat()


def local_today(tz: str, now: datetime | None = None) -> str:
    """Today's date in the IANA zone ``tz`` (``analytics.timezone``, the zone route plans are saved in
    by :func:`analytics.routes.save`), ``YYYY-MM-DD``."""
    return (now or utcnow()).astimezone(ZoneInfo(tz)).date().isoformat()


def plan_stops(stops: Any) -> list[tuple[str, float | None]]:
    """``(device id, planned litres)`` of a plan's ``stops`` JSON in visiting order (module docstring)."""
    if isinstance(stops, dict):
        stops = next((stops[k] for k in ("stops", "device_ids", "order") if isinstance(stops.get(k), list)), [])
    out: list[tuple[str, float | None]] = []
    for stop in stops if isinstance(stops, list) else []:
        demand = None
        if isinstance(stop, dict):
            demand = number(stop.get("demand_l"))
            stop = stop.get("device_id", stop.get("id"))
        if isinstance(stop, str) and stop:
            out.append((stop, demand))
    return out


def stop_ids(stops: Any) -> list[str]:
    """Device ids of a plan's ``stops`` JSON in visiting order."""
    return [device_id for device_id, _ in plan_stops(stops)]


def _plan_extra(stops: Any) -> dict[str, Any]:
    """``load_l``, ``capacity_l`` and ``depot`` of a plan written by :func:`analytics.routes.save`."""
    if not isinstance(stops, dict):
        return {}
    depot = stops.get("depot")
    points = [number(v) for v in depot] if isinstance(depot, list) and len(depot) == 2 else []
    return {"load_l": number(stops.get("load_l")), "capacity_l": number(stops.get("capacity_l")),
            "depot": points if points and None not in points else None}


@router.get("", response_model=list[RouteOut])
def routes(
    session: SessionDep,
    ctx: ContextDep,
    who: Reader,
    day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                            description="YYYY-MM-DD (in each city's time zone); default each city's today"),
    vehicle: int | None = Query(None, ge=0, le=10_000),
    city: str | None = Query(None, max_length=64, description="only this city's plans (a city's token: its own)"),
) -> list[RouteOut]:
    """Collection routes of one day, by city and vehicle, each with its stops in visiting order.

    A plan is one city's (``lorong analytics route --city``); "today" is each city's own date in its
    time zone. A token scoped to a city gets its city's plans only (403 when it asks for another
    city); ``city`` is compared without case (:func:`api.query.resolve_city`: not registered, 422), and of the plans
    saved before plans had a city, those whose every stop is a bin of its city."""
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise InvalidRequest(f"day={day!r} is not a calendar date: use YYYY-MM-DD") from None
    wanted = resolve_city(ctx.sessions, who.city, city, "sees the routes of")  # without case, as /bins does
    cities = {c.id: c for c in session.scalars(select(CityRow))}
    zones = {c: row.timezone for c, row in cities.items()}
    if wanted is not None and wanted not in zones:  # a token of a city no longer registered
        raise InvalidRequest(f"city={wanted!r} is not a registered city (known: {', '.join(sorted(zones))})")
    now = utcnow()
    default_tz = ctx.settings.analytics.timezone
    shown_cities = [wanted] if wanted is not None else sorted(zones)
    days = {c: day or _shown_day(session, ctx.settings.analytics, cities[c], now) for c in shown_cities}
    which = [and_(RoutePlanRow.city_id == c, RoutePlanRow.day == days[c]) for c in shown_cities]
    legacy_tz = zones[wanted] if wanted is not None else default_tz  # plans of no city (before migration 0009)
    which.append(and_(RoutePlanRow.city_id.is_(None), RoutePlanRow.day == (day or local_today(legacy_tz, now))))
    q = select(RoutePlanRow).where(or_(*which)).order_by(RoutePlanRow.city_id, RoutePlanRow.vehicle, RoutePlanRow.id)
    if vehicle is not None:
        q = q.where(RoutePlanRow.vehicle == vehicle)
    plans = list(session.scalars(q))
    ids = {i for p in plans for i in stop_ids(p.stops)}
    devices = {d.id: d for d in session.scalars(select(DeviceRow).where(DeviceRow.id.in_(ids)))} if ids else {}
    if wanted is not None:
        plans = [p for p in plans if p.city_id == wanted or (p.city_id is None and all(
            i in devices and devices[i].city_id == wanted for i in stop_ids(p.stops)))]
        ids = {i for p in plans for i in stop_ids(p.stops)}
    latest = {r.device_id: r for r in session.scalars(
        select(DeviceLatestRow).where(DeviceLatestRow.device_id.in_(ids)))} if ids else {}
    starts = {p.id: p.created_at for p in plans}
    emptied: dict[str, list[datetime]] = {}
    problems: dict[str, str] = {}
    if ids:
        for device_id, at in session.execute(select(CollectionRow.device_id, CollectionRow.at).where(
                CollectionRow.device_id.in_(ids), CollectionRow.at >= min(starts.values())).order_by(CollectionRow.at)):
            emptied.setdefault(device_id, []).append(at)
        for device_id, details in session.execute(select(AlertRow.device_id, AlertRow.details).where(
                AlertRow.device_id.in_(ids), AlertRow.type == CANT_EMPTY.name, AlertRow.status == "active")):
            problems[device_id] = str((details or {}).get("reason", ""))
    out: list[RouteOut] = []
    for plan in plans:
        extra = _plan_extra(plan.stops)
        stops: list[RouteStopOut] = []
        for n, (device_id, demand) in enumerate(plan_stops(plan.stops), start=1):
            d, row = devices.get(device_id), latest.get(device_id)
            if d is not None and d.status != "active":
                continue  # taken out of service since the plan was made: no truck goes there
            level, read_at = metric_value(row.metrics, "fillingLevel") if row else (None, None)
            done = _last_since(emptied.get(device_id), starts[plan.id])
            if emptied_since(read_at, done):
                level = None
            stops.append(RouteStopOut(
                order=n, id=device_id, kecamatan=d.kecamatan if d else "", kelurahan=d.kelurahan if d else "",
                street=d.street if d else "", landmark=d.landmark if d else "",
                lat=d.lat if d else None, lon=d.lon if d else None,
                fillingLevel=shown("fillingLevel", level),
                fillRate_per_h=rate((row.derived or {}).get("fill_rate_per_h")) if row else None,
                demand_l=demand, emptiedAt=done, problem=problems.get(device_id)))
        cfg = city_settings(ctx.settings.analytics, cities[plan.city_id]) if plan.city_id in cities \
            else ctx.settings.analytics
        arrivals(stops, extra.get("depot"), now,
                 depart=max(now, round_start(plan.day, cfg.collection_times, cfg.timezone)))
        if who.area:
            stops = [s for s in stops if who.covers(s.kecamatan)]
            if not stops:
                continue
        out.append(RouteOut(id=plan.id, day=plan.day, city_id=plan.city_id, vehicle=plan.vehicle,
                            distance_km=plan.distance_km, created_at=plan.created_at, stops=stops, **extra))
    return out


def _shown_day(session: SessionDep, base: AnalyticsSettings, city: CityRow, now: datetime) -> str:
    """The day whose plan ``GET /routes`` shows ``city`` by default: the round day in effect
    (:func:`analytics.forecast.round_day` of the city's rounds) when a plan is saved for it, else the
    city's today."""
    cfg = city_settings(base, city)
    upcoming = round_day(now, cfg.collection_times, cfg.collection_weekdays, cfg.timezone)
    saved = session.scalar(select(RoutePlanRow.id).where(RoutePlanRow.city_id == city.id,
                                                         RoutePlanRow.day == upcoming).limit(1))
    return upcoming if saved is not None else local_today(city.timezone, now)


def _last_since(times: list[datetime] | None, start: datetime) -> datetime | None:
    """The last of ``times`` (sorted) at or after ``start``, or ``None``."""
    return times[-1] if times and times[-1] >= start else None


TRUCK_KMH = 20.0
"""Average speed of a collection truck between stops in town, km/h (our choice: Makassar's lorong
are narrow and the trucks stop and start; there is no road graph to do better)."""
STOP_MIN = 5.0
"""Minutes spent at a stop: park, empty the bin, move on (our choice)."""


def arrivals(stops: list[RouteStopOut], depot: list[float] | None, now: datetime,
             depart: datetime | None = None) -> None:
    """Fill in ``eta`` and ``expectedFillingLevel`` of the stops still to do, in place.

    The truck is taken to be at the stop before the first one still to do (or at the depot) at
    ``depart`` (default ``now``; the plan's round start while it is ahead,
    :func:`analytics.forecast.round_start`: a plan
    looked at at 02:00 for the 06:00 round arrives from 06:00 on); it drives the great-circle legs to
    the stops still to do, in order, at :data:`TRUCK_KMH`, and spends :data:`STOP_MIN` at each. The level
    expected on arrival is the latest level plus the bin's fill rate (``fillRate_per_h``) times the hours
    from ``now`` until then, at most 1; without a rate, the latest level.
    """
    depart = now if depart is None else max(now, depart)
    waiting = (depart - now).total_seconds() / 3600.0
    todo = [s.emptiedAt is None and not s.problem for s in stops]
    if True not in todo:
        return
    first = todo.index(True)
    prev = stops[first - 1] if first else None
    here: tuple[float, float] | None = None
    if prev is not None and prev.lat is not None and prev.lon is not None:
        here = (prev.lat, prev.lon)
    elif prev is None and depot:
        here = (depot[0], depot[1])
    hours = 0.0
    for s, to_do in zip(stops[first:], todo[first:], strict=True):
        if not to_do:
            continue
        if s.lat is not None and s.lon is not None:
            if here is not None:
                hours += haversine_m(here, (s.lat, s.lon)) / 1000.0 / TRUCK_KMH
            here = (s.lat, s.lon)
        s.eta = depart + timedelta(hours=hours)
        if s.fillingLevel is not None:
            grow = (s.fillRate_per_h or 0.0) * (waiting + hours)
            s.expectedFillingLevel = shown("fillingLevel", min(1.0, s.fillingLevel + max(0.0, grow)))
        hours += STOP_MIN / 60.0
