"""``lorong devices``: the device registry from the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.errors import RegistryError
from core.model import DeviceKind
from core.settings import Settings
from devices.registry import DeviceIn, add_device, list_devices
from storage.runtime import open_sessions

app = typer.Typer(help="Register and manage devices.", no_args_is_help=True)
console = Console()


@app.command("add")
def add(
    device_id: str = typer.Argument(..., help="DevEUI (LoRaWAN) or serial number"),
    kind: DeviceKind = typer.Option(..., help="bin or air"),
    model: str = typer.Option("", help="device model, e.g. EM310-UDL"),
    codec: str | None = typer.Option(None, help="LoRaWAN codec id, e.g. milesight-em310-udl"),
    lat: float | None = typer.Option(None),
    lon: float | None = typer.Option(None),
    kecamatan: str = typer.Option(""),
    depth_mm: float | None = typer.Option(None, help="sensor face to empty bin floor, mm"),
    blind_zone_mm: float = typer.Option(0.0, help="sensor minimum range, mm"),
) -> None:
    """Register one device."""
    sessions = open_sessions(Settings())
    try:
        dev = DeviceIn(id=device_id, kind=kind, model=model, codec=codec, lat=lat, lon=lon, kecamatan=kecamatan,
                       depth_mm=depth_mm, blind_zone_mm=blind_zone_mm)
        with sessions.begin() as s:
            add_device(s, dev)
    except (ValidationError, RegistryError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"registered {dev.id}")


@app.command("import")
def import_csv(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with a header row")) -> None:
    """Register every row of a CSV (columns = DeviceIn fields); nothing is written if a row is bad."""
    sessions = open_sessions(Settings())
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        with sessions.begin() as s:
            for n, row in enumerate(rows, start=2):
                clean = {k: v for k, v in row.items() if k and v not in (None, "")}
                try:
                    add_device(s, DeviceIn.model_validate(clean))
                except (ValidationError, RegistryError) as exc:
                    raise typer.BadParameter(f"{path}:{n}: {exc}") from None
    except typer.BadParameter as exc:
        console.print(f"[red]error:[/red] {exc.message}; nothing imported")
        raise typer.Exit(1) from None
    console.print(f"imported {len(rows)} devices")


@app.command("list")
def list_cmd(kind: DeviceKind | None = typer.Option(None), kecamatan: str | None = typer.Option(None)) -> None:
    """Show registered devices."""
    sessions = open_sessions(Settings())
    table = Table("id", "kind", "model", "kecamatan", "depth mm", "status")
    with sessions() as s:
        for d in list_devices(s, kind, kecamatan):
            table.add_row(d.id, d.kind, d.model, d.kecamatan, f"{d.depth_mm or ''}", d.status)
    console.print(table)
