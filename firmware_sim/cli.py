"""``lorong sim``: play a Makassar fleet over MQTT."""

from __future__ import annotations

import threading
import time

import typer

from core.model import utcnow
from core.settings import Settings
from firmware_sim.fleet import Fleet
from firmware_sim.publisher import Publisher

app = typer.Typer(help="Simulated devices: a fleet over MQTT.", invoke_without_command=True)


def register_fleet(fleet: Fleet, settings: Settings) -> int:
    """Add the fleet's devices to the registry (existing ids are kept); returns how many were new."""
    from devices.registry import DeviceIn, add_device
    from storage.runtime import open_sessions
    from storage.tables import DeviceRow

    n = 0
    with open_sessions(settings).begin() as s:
        for row in fleet.registry_rows():
            if s.get(DeviceRow, str(row["id"])) is None:
                add_device(s, DeviceIn.model_validate(row))
                n += 1
    return n


def run_fleet(fleet: Fleet, pub: Publisher, speed: float, stop: threading.Event, tick_s: float = 1.0,
              duration_s: float | None = None) -> int:
    """Publish the fleet's uplinks each ``tick_s`` real seconds (``speed`` simulated seconds per real
    second) until ``stop`` is set or ``duration_s`` elapsed; returns messages published."""
    sent = 0
    start = time.monotonic()
    while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
        msgs = fleet.step(tick_s * speed, utcnow())
        if msgs:
            pub.publish_many(msgs)
            sent += len(msgs)
        stop.wait(tick_s)
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
    pub = Publisher(settings.mqtt.host, settings.mqtt.port)
    stop = threading.Event()
    try:
        sent = run_fleet(fleet, pub, speed, stop, duration_s=duration)
    except KeyboardInterrupt:
        sent = -1
    finally:
        pub.close()
    print(f"published {sent} uplinks")
