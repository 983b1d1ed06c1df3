"""``lorong cities``: the cities of the registry (see :mod:`devices.cities`): ``add``, ``edit``,
``remove``, ``list``.

A city's daily means are its own local days: one continuous query per UTC offset of the registered
cities (:mod:`lorong.storage.retention`). ``add``, ``edit`` of a time zone and ``remove`` update those
queries when InfluxDB answers and already has the retention layout; otherwise they say to run
``lorong storage retention apply``.

Exit codes: 0 done (the registry changed, whatever InfluxDB said); 1 the registry refused (id taken;
a city still in use, or the deployment's own city, not removed); 2 bad input (an unknown city, zone,
field or value).
"""

from __future__ import annotations

import json

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Column

from devices.cities import (
    CityChange,
    CityIn,
    add_city,
    city_settings,
    device_counts,
    get_city,
    list_cities,
    remove_city,
    update_city,
)
from devices.cli import fail, field_errors, list_table
from lorong.core import schema
from lorong.core.errors import CityInUse, ConfigError, RegistryError, StoreError, UnknownCity
from lorong.core.settings import Settings
from lorong.storage import retention
from lorong.storage.runtime import day_zones, open_influx, open_sessions

app = typer.Typer(help="Cities: every device belongs to one; analytics, alerts and tokens are per city.",
                  no_args_is_help=True)


def _latlon(text: str, what: str) -> tuple[float, float]:
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise fail(f"{what}: {text!r} is not LAT,LON (e.g. -5.135,119.423)", 2) from None
    return lat, lon


def _kecamatan(items: list[str]) -> dict[str, tuple[float, float]]:
    kec: dict[str, tuple[float, float]] = {}
    for item in items:
        kname, sep, point = item.rpartition("=")
        if not sep or not kname:
            raise fail(f"--kecamatan {item!r}: use NAME=LAT,LON", 2)
        kec[kname.strip()] = _latlon(point, f"--kecamatan {kname}")
    return kec


def _overrides(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        raise fail(f"--analytics is not JSON: {text!r}", 2) from None
    if not isinstance(value, dict):
        raise fail(f"--analytics must be a JSON object of settings, e.g. {{\"full_threshold\": 0.75}}: {text!r}", 2)
    return value


@app.command("add")
def add(
    city_id: str = typer.Argument(..., help="lower-case slug, e.g. jakarta (the `city` tag of its points)"),
    name: str = typer.Option(..., help="name shown to people"),
    timezone: str = typer.Option(..., help="IANA time zone, e.g. Asia/Jakarta"),
    centre: str | None = typer.Option(None, help="map centre LAT,LON (WGS84 degrees)"),
    kecamatan: list[str] = typer.Option([], help="NAME=LAT,LON: a kecamatan and its centroid (repeat)"),
    analytics: str = typer.Option("{}", help='JSON analytics overrides, e.g. {"collection_times": ["05:30"]}'),
) -> None:
    """Register a city."""
    kec, overrides = _kecamatan(kecamatan), _overrides(analytics)
    try:
        city = CityIn(id=city_id, name=name, timezone=timezone,
                      centre=_latlon(centre, "--centre") if centre else None, kecamatan=kec, analytics=overrides)
    except ValidationError as exc:
        raise fail(field_errors(exc), 2) from None
    settings = Settings()
    sessions = open_sessions(settings)
    try:
        with sessions.begin() as s:
            add_city(s, city)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    console = Console(soft_wrap=True, markup=False)
    console.print(f"registered city {city.id} ({city.name}, {city.timezone})")
    for text in sync_daily_means(settings, city.id):
        console.print(text)


def sync_daily_means(settings: Settings, city_id: str, removed: bool = False) -> list[str]:
    """Make the daily means' continuous queries follow the registry's cities after ``city_id`` joined,
    changed its zone or (``removed``) left (:func:`lorong.storage.retention.sync_continuous_queries`), when
    InfluxDB answers and has the retention layout; never raises.

    Returns:
        lines for the operator: the queries dropped and created, or why nothing was done and what to run.
    """
    again = ("run `lorong storage retention apply` so that the daily means no longer keep "
             f"{city_id}'s zone apart" if removed else
             f"run `lorong storage retention apply` so that {city_id}'s daily means are its local days")
    try:
        zones = day_zones(settings)
        with open_influx(settings) as influx:
            if not influx.ping():
                return [f"InfluxDB at {settings.influx.url} does not answer: when it does, {again}"]
            if schema.RP_DAILY not in retention.existing_policies(influx):
                return [f"InfluxDB database {influx.database} has no retention layout yet: `lorong stack up` or "
                        "`lorong storage retention apply` creates it in every city's zone"]
            done = retention.sync_continuous_queries(influx, zones)
    except (ConfigError, StoreError) as exc:
        return [f"daily means not updated ({exc}): {again}"]
    return done or ["daily means: the continuous queries already follow the cities left" if removed else
                    f"daily means: {city_id}'s zone already has its continuous queries"]


@app.command("edit")
def edit(
    city_id: str = typer.Argument(..., help="the city's id (`lorong cities list`)"),
    name: str | None = typer.Option(None, help="name shown to people"),
    timezone: str | None = typer.Option(None, help="IANA time zone, e.g. Asia/Jakarta (the daily means follow it)"),
    centre: str | None = typer.Option(None, help="map centre LAT,LON (WGS84 degrees)"),
    kecamatan: list[str] = typer.Option([], help="NAME=LAT,LON: add a kecamatan or move its centroid (repeat)"),
    analytics: str = typer.Option("{}", help='JSON analytics overrides to set, e.g. {"collection_times": ["05:30"], '
                                              '"full_threshold": 0.75}'),
    reset: list[str] = typer.Option([], help="drop an analytics override: the deployment's value applies (repeat)"),
) -> None:
    """Change a city: its name, time zone, map centre, kecamatan, rounds and thresholds."""
    try:
        change = CityChange(name=name, timezone=timezone, centre=_latlon(centre, "--centre") if centre else None,
                            kecamatan=_kecamatan(kecamatan), analytics=_overrides(analytics), reset=reset)
    except ValidationError as exc:
        raise fail(field_errors(exc), 2) from None
    if change.empty():
        raise fail("nothing to change: give --name, --timezone, --centre, --kecamatan, --analytics or --reset", 2)
    settings = Settings()
    sessions = open_sessions(settings)
    try:
        with sessions.begin() as s:
            old_zone = get_city(s, city_id).timezone
            done = update_city(s, city_id, change)
            try:  # the analytics job's settings of the city: refused here, not in the job
                city_settings(settings.analytics, get_city(s, city_id))
            except ValidationError as exc:
                why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise ValueError(f"city {city_id} as changed does not fit the deployment's analytics settings: "
                                 f"{why}") from None
    except UnknownCity as exc:
        raise fail(str(exc), 2) from None
    except ValidationError as exc:
        raise fail(f"city {city_id}: {field_errors(exc)}", 2) from None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    console = Console(soft_wrap=True, markup=False)
    if not done:
        console.print(f"city {city_id}: nothing changed")
        return
    console.print(f"changed city {city_id}: {'; '.join(done)}")
    if change.timezone is not None and change.timezone != old_zone:
        for text in sync_daily_means(settings, city_id):
            console.print(text)
        console.print(f"daily means already computed keep {old_zone}'s days (InfluxDB 1.x cannot delete them "
                      "from one retention policy); the days from now on are the new zone's")


@app.command("remove")
def remove(
    city_id: str = typer.Argument(..., help="the city's id (`lorong cities list`)"),
    purge_history: bool = typer.Option(False, "--purge-history",
                                       help="delete its retired devices, revoked tokens, cleared alerts and route "
                                            "plans with it (never what is in use)"),
) -> None:
    """Remove a city that nothing uses any more (its readings stay in InfluxDB)."""
    settings = Settings()
    if city_id == settings.city.id:
        raise fail(f"city {city_id} is the deployment's own city (LORONG_CITY__ID, where devices registered "
                   "without a city go): set LORONG_CITY__ID to another registered city first")
    chats = [c.name for c in settings.notify.telegram_chats if c.city == city_id]
    if chats:
        raise fail(f"city {city_id} still has the Telegram chat(s) {', '.join(chats)} (LORONG_NOTIFY__TELEGRAM_CHATS): "
                   "take them out of the settings or give them another city first")
    sessions = open_sessions(settings)
    try:
        with sessions.begin() as s:
            held = remove_city(s, city_id, purge_history=purge_history)
    except UnknownCity as exc:
        raise fail(str(exc), 2) from None
    except CityInUse as exc:
        raise fail(str(exc)) from None
    console = Console(soft_wrap=True, markup=False)
    gone = held.history()
    console.print(f"removed city {city_id}" + (f" with its {', '.join(gone)}" if gone else ""))
    for text in sync_daily_means(settings, city_id, removed=True):
        console.print(text)


@app.command("list")
def list_cmd() -> None:
    """Show the cities with their time zone, kecamatan and device count."""
    console = Console(markup=False, highlight=False)  # names as typed; the terminal's width now (COLUMNS)
    sessions = open_sessions(Settings())
    table = list_table(Column("id", no_wrap=True), "name", *(Column(name, no_wrap=True) for name in (
        "time zone", "centre")), Column("kecamatan", justify="right"), Column("devices", justify="right"))
    with sessions() as s:
        rows = list_cities(s)
        counts = device_counts(s)
        for c in rows:
            where = "" if c.centre_lat is None else f"{c.centre_lat:.4f},{c.centre_lon:.4f}"
            table.add_row(c.id, c.name, c.timezone, where, str(len(c.kecamatan or {})), str(counts.get(c.id, 0)))
    console.print(table)
    overrides = list_table(Column("id", no_wrap=True), "analytics overrides (its own LORONG_ANALYTICS__* values)")
    for c in rows:  # below the cities: a JSON object in a column of a few letters was unreadable at 80 columns
        if c.analytics:
            overrides.add_row(c.id, json.dumps(c.analytics))
    if overrides.rows:
        console.print()
        console.print(overrides)
    console.print(f"{len(rows)} cities" if len(rows) != 1 else "1 city")
