"""``lorong sim``: play a Makassar fleet over MQTT; write a scenario (`scenario`) and load it (`load`);
compare truck policies in the simulated city (`policies`)."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import typer

from firmware_sim.fleet import Fleet
from firmware_sim.publisher import Publisher
from lorong.core.model import utcnow
from lorong.core.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

    from firmware_sim.policy import PolicyFigures

app = typer.Typer(help="Simulated devices: a fleet over MQTT.", invoke_without_command=True)


def register_fleet(fleet: Fleet, settings: Settings) -> int:
    """Add the fleet's devices to the registry (existing ids are kept); returns how many were new.

    Adding devices may start a deployment: a missing SQLite database is created, and said so on stderr
    (:mod:`lorong.storage.runtime`)."""
    from firmware_sim.load import register_devices
    from lorong.storage.runtime import create_database, open_sessions

    created = create_database(settings)
    if created:
        typer.echo(f"created a new database: {created}", err=True)
    return register_devices(fleet.registry_rows(), open_sessions(settings))


class Uplinks(Protocol):
    """What :func:`run_fleet` plays: :class:`firmware_sim.fleet.Fleet` or :class:`firmware_sim.live.LiveCity`."""

    def step(self, dt_s: float, now: datetime) -> list[tuple[str, bytes]]:
        """Advance ``dt_s`` simulated seconds up to ``now`` (tz-aware); the ``(topic, payload)`` uplinks due."""
        ...


def run_fleet(fleet: Uplinks, pub: Publisher, speed: float, stop: threading.Event, tick_s: float = 1.0,
              duration_s: float | None = None) -> int:
    """Publish the fleet's uplinks each ``tick_s`` real seconds (``speed`` simulated seconds per real
    second) until ``stop`` is set, ``duration_s`` elapsed or Ctrl-C (``KeyboardInterrupt``, a normal
    stop here); returns the messages the broker acknowledged (a batch cut short by Ctrl-C is not
    counted)."""
    sent = 0
    start = time.monotonic()
    try:
        while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
            msgs = fleet.step(tick_s * speed, utcnow())
            if msgs:
                pub.publish_many(msgs)
                sent += len(msgs)
            stop.wait(tick_s)
    except KeyboardInterrupt:
        pass
    return sent


@app.callback()
def sim(
    ctx: typer.Context,
    bins: int = typer.Option(20, "--bins", min=0, max=100000),
    air: int = typer.Option(3, "--air", min=0, max=10000),
    speed: float = typer.Option(60.0, "--speed", min=0.1, help="simulated seconds per real second"),
    register: bool = typer.Option(True, help="add the fleet to the registry first"),
    duration: float | None = typer.Option(None, help="stop after this many real seconds"),
    seed: int = typer.Option(7),
) -> None:
    """Publish a fleet of bins (half LoRaWAN EM310-UDL via TTN v3, half native JSON) and air stations."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    fleet = Fleet(bins=bins, air=air, seed=seed)
    if register:
        print(f"registered {register_fleet(fleet, settings)} new devices")
    try:
        pub = Publisher(settings.mqtt.host, settings.mqtt.port)
    except OSError as exc:
        print(f"error: no MQTT broker at {settings.mqtt.host}:{settings.mqtt.port} ({exc.strerror or exc}); "
              "start one with `lorong stack up` or set LORONG_MQTT__HOST/PORT", file=sys.stderr)
        raise typer.Exit(1) from None
    stop = threading.Event()
    try:
        sent = run_fleet(fleet, pub, speed, stop, duration_s=duration)
    finally:
        pub.close()
    print(f"published {sent} uplinks")


@app.command("serial-device")
def serial_device(
    device_id: str = typer.Option("MKS-BIN-0042", "--id", help="serial number the device reports"),
    kind: str = typer.Option("bin", help="bin or air"),
    model: str = typer.Option("LRG-US1"),
    firmware: str = typer.Option("1.4.2"),
    fault: str = typer.Option("ok", help="ok, slow, partial, garbage, nak, hangup or corrupt"),
    fault_on: str = typer.Option("SET", help="command the fault hits once, e.g. 'SET password', GET, SAVE"),
    ending: str = typer.Option("crlf", help="line ending the device sends: crlf, lf or cr"),
    duration: float | None = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
) -> None:
    """A sensor's serial console on a pseudo-terminal, for `lorong devices register --port <pty>`."""
    from firmware_sim.serial_device import SerialDevice

    with SerialDevice(device_id, kind, model, firmware, fault=fault, fault_on=fault_on, ending=ending) as dev:
        print(f"serial console of {device_id} on {dev.port} (fault {fault}); Ctrl-C to stop", flush=True)
        print(f"  lorong devices register --port {dev.port}", flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                if dev.saved is not None:
                    shown = {k: ("***" if k == "password" else v) for k, v in dev.saved.items()}
                    print(f"saved configuration: {shown}", flush=True)
                    dev.saved = None
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


@app.command("scenario")
def scenario(
    out: Path = typer.Option(..., "--out", help="folder for city.json, devices.json, messages.jsonl, truth.json"),
    city: str = typer.Option("makassar", "--city", help="a packaged city (makassar, small, ...) or a city file"),
    days: int | None = typer.Option(None, "--days", min=1, max=60, help="simulated days (default: the city's)"),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default: the city's)"),
    bins: int | None = typer.Option(None, "--bins", min=0, max=20000, help="number of bins (default: the city's)"),
    stations: int | None = typer.Option(None, "--stations", min=0, max=2000, help="air stations (default: the city's)"),
) -> None:
    """Simulate a city that knows the truth and write its files (firmware_sim/SCENARIO.md)."""
    from firmware_sim.city import city_path, load_city
    from firmware_sim.scenario import build_scenario, write_scenario

    try:
        cfg = load_city(city_path(city))
        scn = build_scenario(cfg, seed=seed, days=days, bins=bins, stations=stations)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        write_scenario(scn, out)
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    s = scn.summary()
    print(f"{scn.city.name}: {scn.city.bins} bins, {scn.city.stations} stations, {scn.city.days} days, "
          f"seed {scn.city.seed} -> {out}")
    print(f"time span  {s['start']} .. {s['end']} (messages {s['first_rx']} .. {s['last_rx']})")
    print(f"messages   {s['messages']}")
    print(f"pickups    {s['pickups']}")
    print("events     " + ", ".join(f"{k} {n} ({s['required'].get(k, 0)} required)" for k, n in s["events"].items()))


@app.command("load")
def load(folder: Path = typer.Argument(..., help="a folder written by `lorong sim scenario`")) -> None:
    """Register a scenario's devices and ingest its messages at their simulated receive times."""
    from firmware_sim.load import beyond_retention, load_scenario
    from lorong.core.errors import StoreError
    from lorong.storage.runtime import create_database, open_influx, open_sessions

    if not (folder / "messages.jsonl").is_file() or not (folder / "devices.json").is_file():
        print(f"error: {folder} has no devices.json and messages.jsonl (write one with `lorong sim scenario`)",
              file=sys.stderr)
        raise typer.Exit(2)
    settings = Settings()
    created = create_database(settings)  # loading adds the scenario's devices: it may start a registry
    if created:
        typer.echo(f"created a new database: {created}", err=True)
    influx = open_influx(settings)
    try:
        influx.create_database()
        start = datetime.fromisoformat(json.loads((folder / "truth.json").read_text(encoding="utf-8"))["start"])
        kept = beyond_retention(influx, start, utcnow())
        if kept is not None:
            print(f"error: the scenario starts {start.date()}, before the {kept} days of raw readings database "
                  f"{settings.influx.database!r} keeps, and InfluxDB would drop them: load it into a database "
                  "`lorong stack up` never set up (a new LORONG_INFLUX__DATABASE name, e.g. "
                  f"{settings.influx.database}_scenario: `sim load` makes it with no retention)", file=sys.stderr)
            raise typer.Exit(2)
        report = load_scenario(folder, open_sessions(settings), influx)
    except StoreError as exc:
        print(f"error: InfluxDB at {settings.influx.url}: {exc}; start it with `lorong stack up`", file=sys.stderr)
        raise typer.Exit(1) from None
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    finally:
        influx.close()
    print(f"devices    {report.devices_new} new")
    print(f"messages   {report.messages} in {report.seconds:.1f} s")
    print(f"points     {report.points} written")
    print(f"duplicates {report.duplicates} dropped")
    print("rejects    " + (", ".join(f"{k} {n}" for k, n in report.rejects.items()) or "none"))


def policies_table(figures: dict[str, PolicyFigures], title: str) -> Table:
    """A rich table of :func:`firmware_sim.policy.compare`'s figures, one row per policy, km also relative to
    the fixed round."""
    from rich.table import Table

    fixed = figures.get("fixed")
    t = Table(title=title)
    for col in ("policy", "km", "vs fixed", "pickups", "visits", "mean fill at emptying", "overflow bin-h (100 %)",
                "bin-h >= 95 %", "left out"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for f in figures.values():
        rel = f"{f.km / fixed.km - 1:+.0%}" if fixed is not None and fixed.km > 0 and f is not fixed else "-"
        t.add_row(f.policy, f"{f.km:.1f}", rel, str(f.pickups), str(f.stops), f"{f.mean_fill_at_emptying:.2f}",
                  f"{f.overflow_bin_h:.1f}", f"{f.critical_bin_h:.1f}", str(f.dropped))
    return t


@app.command("policies")
def policies(
    city: str = typer.Option("makassar", "--city", help="a packaged city (makassar, small, ...) or a city file"),
    days: int = typer.Option(7, "--days", min=1, max=59, help="days measured, after the warm-up"),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default: the city's)"),
    warmup: int = typer.Option(14, "--warmup", min=0, max=59,
                               help="days of fixed rounds first, under every policy (Lorong learns from them)"),
    policy: list[str] = typer.Option(["fixed", "fixed-vrp", "lorong"], "--policy",
                                     help="fixed, fixed-vrp or lorong; repeat for several"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
) -> None:
    """Drive the simulated city's trucks on the fixed round and on Lorong's plan; print km, overflow and fill
    at emptying per policy (firmware_sim/policy.py)."""
    from rich.console import Console

    from firmware_sim.city import city_path, load_city
    from firmware_sim.policy import TARGET_KM_SAVING, compare, km_saving, target_met

    try:
        cfg = load_city(city_path(city))
        figures = compare(cfg, days, cfg.seed if seed is None else seed, warmup, policy)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    used = cfg.seed if seed is None else seed
    if as_json:
        print(json.dumps({"city": cfg.name, "seed": used, "days": days, "warmup_days": warmup,
                          "policies": {k: asdict(v) for k, v in figures.items()}}, indent=2))
        return
    console = Console() if sys.stdout.isatty() else Console(width=150)
    console.print(policies_table(figures, f"{cfg.name}, seed {used}: {days} days after {warmup} days of fixed "
                                          "rounds"))
    saving, met = km_saving(figures), target_met(figures)
    if saving is not None:
        console.print(f"lorong drove {saving:.0%} fewer km than the fixed round (target {TARGET_KM_SAVING:.0%} "
                      f"with no more overflow bin-hours): {'met' if met else 'not met'}", highlight=False)
