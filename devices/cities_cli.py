"""``lorong cities``: the cities of the registry (see :mod:`devices.cities`).

A city's daily means are its own local days: one continuous query per UTC offset of the registered
cities (:mod:`lorong.storage.retention`). ``add`` updates those queries when InfluxDB answers and
already has the retention layout; otherwise it says to run ``lorong storage retention apply``.

Exit codes: 0 done (the city is registered, whatever InfluxDB said); 1 the registry refused (id
taken); 2 bad input.
"""

from __future__ import annotations

import json

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from devices.cities import CityIn, add_city, device_counts, list_cities
from devices.cli import fail, field_errors
from lorong.core import schema
from lorong.core.errors import ConfigError, RegistryError, StoreError
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
    kec: dict[str, tuple[float, float]] = {}
    for item in kecamatan:
        kname, sep, point = item.rpartition("=")
        if not sep or not kname:
            raise fail(f"--kecamatan {item!r}: use NAME=LAT,LON", 2)
        kec[kname.strip()] = _latlon(point, f"--kecamatan {kname}")
    try:
        overrides = json.loads(analytics)
    except ValueError:
        raise fail(f"--analytics is not JSON: {analytics!r}", 2) from None
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


def sync_daily_means(settings: Settings, city_id: str) -> list[str]:
    """Make the daily means' continuous queries follow the registry's cities after ``city_id`` joined
    (:func:`lorong.storage.retention.sync_continuous_queries`), when InfluxDB answers and has the retention
    layout; never raises.

    Returns:
        lines for the operator: the queries dropped and created, or why nothing was done and what to run.
    """
    again = f"run `lorong storage retention apply` so that {city_id}'s daily means are its local days"
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
    return done or [f"daily means: {city_id}'s zone already has its continuous queries"]


@app.command("list")
def list_cmd() -> None:
    """Show the cities with their time zone, kecamatan and device count."""
    console = Console(soft_wrap=True, markup=False)  # names as typed; built here: the terminal's width now (COLUMNS)
    sessions = open_sessions(Settings())
    table = Table("id", "name", "time zone", "centre", "kecamatan", "devices", "analytics overrides")
    with sessions() as s:
        rows = list_cities(s)
        counts = device_counts(s)
        for c in rows:
            where = "" if c.centre_lat is None else f"{c.centre_lat:.4f},{c.centre_lon:.4f}"
            table.add_row(c.id, c.name, c.timezone, where, str(len(c.kecamatan or {})), str(counts.get(c.id, 0)),
                          json.dumps(c.analytics or {}))
    for col in table.columns:  # an 80-column terminal folds long cells instead of cutting them (…)
        col.overflow = "fold"
    console.print(table)
    console.print(f"{len(rows)} cities" if len(rows) != 1 else "1 city")
