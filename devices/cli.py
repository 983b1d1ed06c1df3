"""``lorong devices``: the device registry from the command line.

Exit codes: 0 done; 1 the registry refused (unknown id, id taken, bad CSV rows); 2 bad input;
3 the device's serial console failed (``register``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from devices import credentials as creds
from devices import register_cmd
from devices.cities import get_city
from devices.csvio import CsvProblems, import_devices, write_devices
from devices.register_cmd import creating_sessions
from devices.registry import (
    STATUSES,
    DeviceIn,
    DeviceUpdate,
    add_device,
    get_device,
    list_devices,
    retire_device,
    update_device,
)
from lorong.core.errors import ConfigError, RegistryError, UnknownCity
from lorong.core.model import DeviceKind, utcnow
from lorong.core.settings import CITY_ID, Settings
from lorong.storage.files import missing_folder
from lorong.storage.kecamatan import UnknownKecamatan, known_kecamatan, match_kecamatan
from lorong.storage.runtime import open_sessions

app = typer.Typer(help="Register and manage devices.", no_args_is_help=True)
cred_app = typer.Typer(help="Per-device MQTT credentials and the broker's password and ACL files.",
                       no_args_is_help=True)
app.add_typer(cred_app, name="credentials")
app.command("register")(register_cmd.register)
console = Console(soft_wrap=True, markup=False)  # ids, names and streets are shown as typed
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise. ``message`` is shown as it is:
    square brackets in it (a regex pattern, a device id) are escaped, not taken for rich markup."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def list_table(*columns: str | Column) -> Table:
    """A table for a list command that stays readable in an 80-column terminal (and in a pipe, where rich
    takes 80 columns): no box (a border costs three columns per column), two spaces between columns,
    each header whole, and a long cell folded onto the next line, never cut with ``…``. A plain-string column wraps at
    spaces; pass ``Column(name, no_wrap=True)`` for ids, codes and times, which must stay whole."""
    table = Table(*columns, box=None, padding=(0, 1), pad_edge=False)
    for col in table.columns:
        col.overflow = "fold"
        col.min_width = max(col.min_width or 0, len(str(col.header)))  # a header never folds (kecamata / n)
    return table


def field_errors(exc: ValidationError) -> str:
    """The invalid fields on one line, ``field: message; ...``: a message that already names its field
    does not name it twice (``centre: centre: ...``), and a city id that is not a slug says what one is
    (with the pattern :data:`lorong.core.settings.CITY_ID`)."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "input"
        msg = e["msg"].removeprefix("Value error, ").removeprefix(f"{where}: ")
        if e["type"] == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == CITY_ID:
            msg = (f"{e['input']!r} is not a city id: lower-case letters a-z, digits and '-', at most 32, "
                   f"e.g. jakarta ({CITY_ID})")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def city_option(value: str | None) -> str | None:
    """A ``--city`` as typed, as a city id: ids are lower-case slugs, so ``--city Jakarta`` (or
    `` jakarta ``) means ``jakarta``; whether it is registered is the registry's to say."""
    return value.strip().lower() if value else value


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command("add")
def add(
    device_id: str = typer.Argument(..., help="DevEUI (LoRaWAN) or serial number"),
    kind: DeviceKind = typer.Option(..., help="bin or air"),
    city: str | None = typer.Option(None, help="city id (`lorong cities list`); default the only city"),
    model: str | None = typer.Option(None, help="device model, e.g. EM310-UDL"),
    codec: str | None = typer.Option(None, help="LoRaWAN codec id, e.g. milesight-em310-udl"),
    lat: float | None = typer.Option(None, help="WGS84 latitude, degrees"),
    lon: float | None = typer.Option(None, help="WGS84 longitude, degrees"),
    kecamatan: str | None = typer.Option(None),
    kelurahan: str | None = typer.Option(None),
    street: str | None = typer.Option(None, help="street or lorong"),
    landmark: str | None = typer.Option(None, help="what a crew sees there: a mosque, a market gate"),
    depth_mm: float | None = typer.Option(None, help="sensor face to empty bin floor, mm"),
    blind_zone_mm: float | None = typer.Option(None, help="sensor minimum range, mm"),
    capacity_l: float | None = typer.Option(None, help="bin volume, litres"),
    waste_kind: str | None = typer.Option(None, help="organik, anorganik or campuran"),
    report_interval_s: int | None = typer.Option(None, help="seconds between uplinks"),
    status: str | None = typer.Option(None, help=", ".join(STATUSES)),
    firmware: str | None = typer.Option(None),
    installed_at: str | None = typer.Option(None, help="ISO 8601 with offset"),
    installed_by: str | None = typer.Option(None, help="technician"),
) -> None:
    """Register one device (without its serial console: see `register` for that)."""
    city = city_option(city)
    if kind is DeviceKind.AIR:
        bin_only = {"--depth-mm": depth_mm, "--blind-zone-mm": blind_zone_mm, "--capacity-l": capacity_l,
                    "--waste-kind": waste_kind}
        given = [opt for opt, value in bin_only.items() if value is not None]
        if given:
            raise fail(f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} to bins; an air station "
                       "(--kind air) has no bin geometry", 2)
    try:
        dev = DeviceIn.model_validate(_given(
            id=device_id, kind=kind, city_id=city, model=model, codec=codec, lat=lat, lon=lon, kecamatan=kecamatan,
            kelurahan=kelurahan, street=street, landmark=landmark, depth_mm=depth_mm, blind_zone_mm=blind_zone_mm,
            capacity_l=capacity_l, waste_kind=waste_kind, report_interval_s=report_interval_s, status=status,
            firmware=firmware, installed_at=installed_at, installed_by=installed_by))
    except ValidationError as exc:
        raise fail(field_errors(exc), 2) from None
    sessions = creating_sessions(Settings())
    try:
        with sessions.begin() as s:
            add_device(s, dev)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    console.print(f"registered {dev.id}")


@app.command("update")
def update(
    device_id: str = typer.Argument(...),
    kind: DeviceKind | None = typer.Option(None),
    city: str | None = typer.Option(None, help="move it to this city (`lorong cities list`); its active alerts "
                                               "go with it"),
    model: str | None = typer.Option(None),
    codec: str | None = typer.Option(None),
    lat: float | None = typer.Option(None),
    lon: float | None = typer.Option(None),
    kecamatan: str | None = typer.Option(None),
    kelurahan: str | None = typer.Option(None),
    street: str | None = typer.Option(None),
    landmark: str | None = typer.Option(None),
    depth_mm: float | None = typer.Option(None),
    blind_zone_mm: float | None = typer.Option(None),
    capacity_l: float | None = typer.Option(None),
    waste_kind: str | None = typer.Option(None),
    full_threshold: float | None = typer.Option(None, help="fill fraction that counts as full, 0..1"),
    report_interval_s: int | None = typer.Option(None),
    status: str | None = typer.Option(None, help=", ".join(STATUSES)),
    firmware: str | None = typer.Option(None),
    installed_at: str | None = typer.Option(None, help="ISO 8601 with offset"),
    installed_by: str | None = typer.Option(None),
    clear: list[str] = typer.Option([], help="empty a field (repeatable): codec, lat, lon, depth_mm ..."),
) -> None:
    """Change some fields of a device; the id cannot change. ``--status retired`` retires it as
    ``retire`` does, broker access included."""
    city = city_option(city)
    values = _given(kind=kind, city_id=city, model=model, codec=codec, lat=lat, lon=lon, kecamatan=kecamatan,
                    kelurahan=kelurahan, street=street, landmark=landmark, depth_mm=depth_mm,
                    blind_zone_mm=blind_zone_mm, capacity_l=capacity_l, waste_kind=waste_kind,
                    full_threshold=full_threshold, report_interval_s=report_interval_s, status=status,
                    firmware=firmware, installed_at=installed_at, installed_by=installed_by)
    values.update(dict.fromkeys(clear))
    if not values:
        raise fail("nothing to change: give at least one field option", 2)
    try:
        change = DeviceUpdate.model_validate(values)
    except ValidationError as exc:
        raise fail(field_errors(exc), 2) from None
    sessions = open_sessions(Settings())
    try:
        with sessions.begin() as s:
            row = update_device(s, device_id, change)
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"updated {row.id}: {', '.join(sorted(values))}")
    if row.status == "retired":
        console.print(_revoke_on_broker(sessions), highlight=False)


@app.command("retire")
def retire(
    device_id: str = typer.Argument(...),
    at: str | None = typer.Option(None, help="when, ISO 8601 with offset (default: now)"),
) -> None:
    """Retire a device: it leaves the active fleet and its MQTT credentials are revoked.

    A device that is already retired is left as it is (exit 0); the time it was retired is shown.
    """
    when = _parse_at(at) if at else utcnow()
    try:
        sessions = open_sessions(Settings())
        with sessions.begin() as s:
            row = get_device(s, device_id)
            if row.status == "retired":
                console.print(f"{row.id} was already retired at {_retired_at(row.updated_at)}; nothing changed",
                              highlight=False)
                return
            before = len(creds.live_credentials(s))
            row = retire_device(s, device_id, when)
            revoked = before - len(creds.live_credentials(s))
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"retired {row.id}; {revoked} MQTT credential(s) revoked", highlight=False)
    console.print(_revoke_on_broker(sessions), highlight=False)


def _revoke_on_broker(sessions: Any) -> str:
    """:func:`devices.credentials.revoke_on_broker` after a committed revocation; a broker file
    that cannot be written is one error line saying the registry change stands."""
    try:
        with sessions() as s:
            return creds.revoke_on_broker(s, Settings())
    except (ConfigError, OSError) as exc:
        raise fail(f"the registry change is saved, but the broker files were not rewritten: {exc}; fix it and "
                   "run `lorong devices credentials export` and `lorong stack reload`") from None


def _parse_at(at: str) -> datetime:
    """``--at`` as a tz-aware time; bad input exits 2 with a message naming the option."""
    example = "e.g. 2026-11-29T10:00:00+08:00"
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise fail(f"--at {at!r} is not an ISO 8601 time; give one with a UTC offset, {example}", 2) from None
    if when.tzinfo is None:
        raise fail(f"--at {at!r} has no UTC offset; give one, {example}", 2)
    return when


def _retired_at(when: datetime) -> str:
    """A retired device's ``updated_at`` (set to the retire time; a retired row never changes) in UTC."""
    return when.astimezone(UTC).isoformat(timespec="seconds") if when.tzinfo else f"{when.isoformat()}+00:00"


@app.command("list")
def list_cmd(
    kind: DeviceKind | None = typer.Option(None),
    kecamatan: str | None = typer.Option(None),
    city: str | None = typer.Option(None, help="only this city's devices"),
    status: str | None = typer.Option(None, help=", ".join(STATUSES)),
    all_: bool = typer.Option(False, "--all", help="include retired devices"),
) -> None:
    """Show registered devices (retired ones only with --all or --status retired); `show ID` gives every field."""
    if status is not None and status not in STATUSES:
        raise fail(f"--status: {status!r} is not one of {', '.join(STATUSES)}", 2)
    sessions = open_sessions(Settings())
    city = city_option(city)
    with sessions() as s:  # a filter that names nothing is a typo, not an empty registry
        try:
            if city is not None:
                get_city(s, city)
            if kecamatan:
                kecamatan = match_kecamatan(kecamatan, known_kecamatan(s, city), city)
        except UnknownCity as exc:
            raise fail(f"--city: {exc}", 2) from None
        except UnknownKecamatan as exc:
            raise fail(f"--kecamatan: {exc}", 2) from None
    # what tells devices apart and says which need a visit, in 80 columns; every field of one: `devices show ID`
    table = list_table(*(Column(name, no_wrap=True) for name in ("id", "kind", "city")), "kecamatan",
                       Column("status", no_wrap=True), Column("last seen (UTC)", no_wrap=True))
    with sessions() as s:
        rows = list_devices(s, kind, kecamatan, include_retired=all_, status=status, city_id=city)
        for d in rows:
            seen = d.last_seen.astimezone(UTC) if d.last_seen and d.last_seen.tzinfo else d.last_seen
            table.add_row(d.id, d.kind, d.city_id, d.kecamatan, d.status, f"{seen:%Y-%m-%d %H:%M}" if seen else "")
    console.print(table)
    console.print(f"{len(rows)} device(s)")


@app.command("show")
def show(device_id: str = typer.Argument(...)) -> None:
    """Every field of one device and its MQTT credentials (never the passwords)."""
    sessions = open_sessions(Settings())
    try:
        with sessions() as s:
            row = get_device(s, device_id)
            history = creds.credentials_of(s, row.id)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    table = Table("field", "value", show_header=False)
    for name in (*DeviceIn.model_fields, "last_seen", "created_at", "updated_at"):
        value = getattr(row, name)
        table.add_row(name, "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value))
    console.print(table)
    if not history:
        console.print("no MQTT credentials (`lorong devices credentials issue` gives it one)")
    for c in history:
        state = f"revoked {c.revoked_at:%Y-%m-%d %H:%M} UTC" if c.revoked_at else "live"
        console.print(f"MQTT credential: user {c.username}, topic {c.topic}, issued {c.created_at:%Y-%m-%d %H:%M} "
                      f"UTC, {state}", highlight=False)


@app.command("import")
def import_csv(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with a header row"),
    update: bool = typer.Option(False, "--update", help="change registered devices to the row's non-empty cells "
                                "instead of refusing their ids"),
) -> None:
    """Register every row of a CSV (columns as `export` writes them); nothing is written if any row is bad.
    A row that sets a registered device's status to retired retires it, broker access included."""
    sessions = creating_sessions(Settings())
    try:
        with sessions.begin() as s, path.open(encoding="utf-8", newline="") as fh:
            known = {d.id for d in list_devices(s, include_retired=True)} if update else set()
            rows = import_devices(s, fh, update=update)
            changed = sum(1 for r in rows if r.id in known)
            retired = any(r.status == "retired" for r in rows if r.id in known)  # a retired one cannot change
    except CsvProblems as exc:
        table = Table("row", "column", "problem", title=f"{path}: nothing imported")
        for p in exc.problems:
            table.add_row(str(p.row), p.column, p.message)
        err.print(table)
        if not update and any(p.message.endswith("is already registered") for p in exc.problems):
            err.print("to change registered devices from this file, import it with --update")
        raise fail(f"{len(exc.problems)} problem(s) in {path}; nothing imported") from None
    except UnicodeDecodeError as exc:
        raise fail(f"{path} is not UTF-8 text: {exc}") from None
    detail = f" ({len(rows) - changed} new, {changed} updated)" if update else ""
    console.print(f"imported {len(rows)} devices{detail}")
    if retired:
        console.print(_revoke_on_broker(sessions), highlight=False)


@app.command("export")
def export_csv(
    path: str = typer.Argument("-", help="output CSV file, - for stdout"),
    kind: DeviceKind | None = typer.Option(None),
    status: str | None = typer.Option(None),
) -> None:
    """Write the registry as CSV (every device, retired ones too, unless filtered)."""
    if path != "-" and (why := missing_folder(Path(path))) is not None:
        raise fail(why)
    sessions = open_sessions(Settings())
    with sessions() as s:
        rows = list_devices(s, kind, include_retired=True, status=status)
        if path == "-":
            write_devices(rows, sys.stdout)
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                n = write_devices(rows, fh)
        except OSError as exc:  # a directory named like the file, no permission, a full disk
            raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    console.print(f"exported {n} devices to {path}")


@cred_app.command("issue")
def issue(device_id: str = typer.Argument(...)) -> None:
    """Give a device a new MQTT password (revoking the old one); the password is shown once."""
    sessions = open_sessions(Settings())
    try:
        with sessions.begin() as s:
            cred, password = creds.issue_credential(s, device_id, utcnow())
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"MQTT user {cred.username}, topic {cred.topic}")
    console.print(_revoke_on_broker(sessions), highlight=False)  # the earlier password stops working now
    console.print(f"password (shown once, not stored): {password}", highlight=False)  # last: scripts take it


@cred_app.command("export")
def export_credentials(
    out: Path | None = typer.Option(None, help="directory (default: <var_dir>/mosquitto)"),
) -> None:
    """Write Mosquitto's password file and ACL file for every live device credential and the services.

    The ingester's account is LORONG_MQTT__USERNAME / LORONG_MQTT__PASSWORD when both are set, else
    the one kept in <out>/ingest.env (created with a fresh password on first export). The alert
    publisher's (writes lorong/alerts/#) is LORONG_NOTIFY__MQTT_USERNAME / _PASSWORD, else the one
    in <out>/alerts.env; alert consumers read lorong/alerts/# with the account in <out>/alerts-reader.env.
    """
    settings = Settings()
    out_dir = out or settings.var_dir / "mosquitto"
    sessions = open_sessions(settings)
    try:
        with sessions() as s:
            done = creds.export_for(s, settings, out_dir)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {done.passwd} and {done.acl}: {done.devices} device(s) and ingester account "
                  f"{done.ingester!r} (from {done.ingester_source})")
    console.print(f"alert publisher {done.publisher!r} writes {' and '.join(creds.ALERTS_FILTERS)}; "
                  f"alert consumers read it as {done.reader!r} ({out_dir / creds.ALERTS_READER_ENV})")
    if done.ingester_source != "environment":
        console.print(f"start the ingester with its account: set -a; . {done.ingester_source}; set +a; "
                      "lorong ingest run")
    console.print("running broker: `lorong stack reload` makes it read the new files")
