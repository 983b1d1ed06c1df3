"""``lorong devices register``: register a sensor through its serial console (devices/PROTOCOL.md).

Kept apart from devices/cli.py, which attaches it as a command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from devices import registration
from devices.credentials import revoke_on_broker
from devices.protocol import REPLY_TIMEOUT_S
from devices.protocol import Console as DeviceConsole
from devices.registry import WASTE_KINDS, DeviceIn
from devices.serial_link import BAUDRATE, SerialLink
from lorong.core.errors import ConfigError, DeviceError, RegistryError
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.runtime import create_database, open_sessions

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_REGISTRY, EXIT_INPUT, EXIT_DEVICE = 1, 2, 3


def _fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr (brackets in it escaped, not rich markup); the exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


MAX_ATTEMPTS = 5


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in options:
            raise ValueError(f"choose one of {', '.join(options)}")
        return text

    return convert


def _ask(value: Any, flag: str, text: str, no_input: bool, convert: Callable[[str], Any] = str,
         default: Any = None, required: bool = True) -> Any:
    """``value`` if given, else the technician's answer to a prompt, converted with ``convert``.

    An empty answer takes ``default`` (``None`` when not ``required``); a bad answer is asked again,
    at most :data:`MAX_ATTEMPTS` times. With ``--no-input`` a missing required value is an error
    naming ``flag``.
    """
    if value is not None:
        return value
    if no_input:
        if required and default is None:
            raise _fail(f"{flag} is required with --no-input", EXIT_INPUT)
        return None if default == "" else default
    shown = f"{text} [{default}]" if default not in (None, "") else text
    for _ in range(MAX_ATTEMPTS):
        answer = str(typer.prompt(shown, default="", show_default=False)).strip()
        if not answer:
            if default is not None or not required:
                return None if default == "" else default
            err.print("a value is required")
            continue
        try:
            return convert(answer)
        except ValueError as exc:
            err.print(f"{answer!r}: {exc}")
    raise _fail(f"no valid {flag} after {MAX_ATTEMPTS} answers", EXIT_INPUT)


def creating_sessions(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the registry, creating a missing SQLite database first and saying where on stderr:
    adding devices is how a deployment starts (other commands refuse, see :mod:`lorong.storage.runtime`)."""
    created = create_database(settings)
    if created:
        typer.echo(f"created a new database: {created}", err=True)
    return open_sessions(settings)


def register(
    port: str = typer.Option(..., help="serial port of the sensor's console, e.g. /dev/ttyUSB0"),
    baud: int = typer.Option(BAUDRATE, help="bits per second (8N1)"),
    timeout: float = typer.Option(REPLY_TIMEOUT_S, help="seconds to wait for each reply"),
    broker_host: str | None = typer.Option(None, help="broker host as the device reaches it "
                                                      "(default: LORONG_MQTT__HOST)"),
    broker_port: int | None = typer.Option(None, help="broker port (default: LORONG_MQTT__PORT)"),
    interval: int = typer.Option(600, help="seconds between uplinks"),
    lat: float | None = typer.Option(None, help="WGS84 latitude, degrees"),
    lon: float | None = typer.Option(None, help="WGS84 longitude, degrees"),
    kecamatan: str | None = typer.Option(None, help="district"),
    kelurahan: str | None = typer.Option(None, help="sub-district"),
    street: str | None = typer.Option(None, help="street or lorong"),
    depth_mm: float | None = typer.Option(None, help="bins: sensor face to empty bin floor, mm"),
    blind_zone_mm: float | None = typer.Option(None, help="bins: sensor minimum range, mm"),
    capacity_l: float | None = typer.Option(None, help="bins: volume, litres"),
    waste_kind: str | None = typer.Option(None, help="bins: organik, anorganik or campuran"),
    codec: str | None = typer.Option(None, help="LoRaWAN codec id, if the device also uplinks over LoRaWAN"),
    technician: str | None = typer.Option(None, help="who installs it (installed_by)"),
    no_input: bool = typer.Option(False, "--no-input", help="never prompt: a missing required detail is an error"),
) -> None:
    """Register a sensor over its serial console: read its identity and a live reading, ask for the
    installation details, write its MQTT configuration with its own password, verify it, and only
    then add it to the registry. The password is shown once."""
    settings = Settings()
    sessions = creating_sessions(settings)
    try:
        link = SerialLink(port, baud)
    except DeviceError as exc:
        raise _fail(str(exc), EXIT_DEVICE) from None
    with link:
        dev_console = DeviceConsole(link, timeout_s=timeout)
        try:
            probe = registration.identify(dev_console, sessions)
        except DeviceError as exc:
            raise _fail(f"{port}: {exc}; nothing was registered", EXIT_DEVICE) from None
        except RegistryError as exc:
            raise _fail(str(exc), EXIT_REGISTRY) from None
        except ValueError as exc:
            raise _fail(f"{port}: device reports a bad id: {exc}", EXIT_DEVICE) from None
        ident = probe.identity
        console.print(f"device [bold]{escape(ident.device_id)}[/bold]: {ident.kind} sensor {ident.model}, firmware "
                      f"{ident.firmware}" + (f" (in the registry as {probe.existing})" if probe.existing else ""))
        table = Table("metric", "value", title="self-test")
        for name, value in probe.reading.items():
            table.add_row(name, f"{value:g}")
        console.print(table)

        bin_ = ident.kind == "bin"
        details: dict[str, Any] = {
            "id": ident.device_id, "kind": ident.kind, "model": ident.model, "firmware": ident.firmware,
            "codec": codec, "report_interval_s": interval, "status": "active", "installed_at": utcnow(),
            "kecamatan": _ask(kecamatan, "--kecamatan", "Kecamatan", no_input),
            "kelurahan": _ask(kelurahan, "--kelurahan", "Kelurahan", no_input, default="", required=False),
            "street": _ask(street, "--street", "Street or lorong", no_input, default="", required=False),
            "lat": _ask(lat, "--lat", "Latitude (degrees)", no_input, float),
            "lon": _ask(lon, "--lon", "Longitude (degrees)", no_input, float),
        }
        if bin_:
            details["depth_mm"] = _ask(depth_mm, "--depth-mm", "Bin depth, sensor to empty floor (mm)", no_input,
                                       float)
            details["blind_zone_mm"] = _ask(blind_zone_mm, "--blind-zone-mm", "Sensor blind zone (mm)", no_input,
                                            float, default=0.0)
            details["capacity_l"] = _ask(capacity_l, "--capacity-l", "Capacity (litres, empty to skip)", no_input,
                                         float, default="", required=False)
            details["waste_kind"] = _ask(waste_kind, "--waste-kind", f"Waste kind ({', '.join(WASTE_KINDS)})",
                                         no_input, _choice(WASTE_KINDS), default="campuran")
        details["installed_by"] = _ask(technician, "--technician", "Technician", no_input)
        try:
            device = DeviceIn.model_validate({k: v for k, v in details.items() if v is not None})
        except ValidationError as exc:
            bad = "; ".join(f"{e['loc'][0] if e['loc'] else 'input'}: {e['msg'].removeprefix('Value error, ')}"
                            for e in exc.errors())
            raise _fail(f"{bad}; nothing was written to the device or the registry", EXIT_INPUT) from None

        host = broker_host or settings.mqtt.host
        bport = broker_port or settings.mqtt.port
        try:
            done = registration.register(dev_console, sessions, device, host, bport, utcnow())
        except DeviceError as exc:
            raise _fail(f"{port}: {exc}; nothing was registered", EXIT_DEVICE) from None
        except RegistryError as exc:
            raise _fail(f"{exc}; the device holds the new configuration but is not registered", EXIT_REGISTRY) \
                from None
    console.print(f"configuration written and verified: broker {host}:{bport}, topic {done.credential.topic}, "
                  f"every {interval} s")
    console.print(f"registered [bold]{escape(done.device.id)}[/bold] ({escape(done.device.kecamatan)}); MQTT user "
                  f"{done.credential.username}")
    console.print(f"MQTT password (shown once, not stored): {done.password}", highlight=False)
    # the broker learns the new password (and forgets an earlier one of this device) at once when it runs
    # on Lorong's exported files (issue 14: a re-issued password must not leave the old one working)
    try:
        with sessions() as s:
            console.print(revoke_on_broker(s, settings), highlight=False)
    except (ConfigError, OSError) as exc:
        raise _fail(f"registered, but the broker files were not rewritten: {exc}; fix it and run "
                    "`lorong devices credentials export` and `lorong stack reload`", EXIT_REGISTRY) from None
