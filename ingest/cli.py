"""``lorong ingest``: run the ingester, decode a payload, list formats."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict

import typer

from core.settings import Settings
from devices.registry import RegistryLookup
from ingest.codecs import CODECS, decode_hex
from ingest.deadletter import DeadLetterStore
from ingest.formats import FORMATS, TOPICS
from ingest.service import Ingester
from storage.runtime import open_influx, open_sessions

app = typer.Typer(help="MQTT payloads into validated readings in InfluxDB.", no_args_is_help=True)


def build(settings: Settings) -> Ingester:
    """An :class:`Ingester` wired to the configured broker, InfluxDB and database."""
    sessions = open_sessions(settings)
    return Ingester(settings, RegistryLookup(sessions), DeadLetterStore(sessions), open_influx(settings))


@app.command("run")
def run() -> None:
    """Subscribe and ingest until SIGINT/SIGTERM; pending points are flushed on exit."""
    settings = Settings()
    ingester = build(settings)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    ingester.start()
    print(f"ingesting from {settings.mqtt.host}:{settings.mqtt.port} topics {', '.join(settings.mqtt.topics)}")
    done.wait()
    ingester.stop()


@app.command("decode")
def decode(
    hex_payload: str = typer.Argument(..., help="FRMPayload as hex"),
    codec: str = typer.Option(..., "--codec", help="codec id, see `lorong ingest formats`"),
    fport: int = typer.Option(..., "--fport", help="LoRaWAN FPort"),
) -> None:
    """Decode LoRaWAN bytes with a codec and print the canonical readings as JSON."""
    from core.errors import PayloadError

    try:
        readings = decode_hex(codec, fport, hex_payload)
    except PayloadError as exc:
        print(json.dumps({"error": exc.reason, "detail": exc.detail}))
        raise typer.Exit(1) from None
    print(json.dumps([{**asdict(r), "ts": r.ts.isoformat() if r.ts else None} for r in readings], indent=2))


@app.command("formats")
def formats() -> None:
    """List payload formats (with their default topics) and LoRaWAN codecs."""
    for name in FORMATS:
        print(f"format {name:16s} topics {', '.join(TOPICS[name])}")
    for cid in sorted(CODECS):
        print(f"codec  {cid}")
