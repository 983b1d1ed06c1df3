"""``lorong ingest``: run the ingester, replay captures and dead letters, decode a payload, list formats."""

from __future__ import annotations

import gc
import inspect
import json
import signal
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from devices.csvio import CsvProblems, read_devices
from devices.registry import RegistryLookup, to_info
from ingest.codecs import CODECS, decode_hex
from ingest.deadletter import DeadLetterStore
from ingest.formats import FORMATS, TOPICS
from ingest.handover import MAX_WORKERS, RetiringIngester, hand_over
from ingest.pipeline import DeviceLookup, Pipeline
from ingest.replay import StaticDevices, replay_capture, replay_dead_letters
from ingest.service import Ingester
from ingest.validate import Policy
from ingest.workers import run_workers
from lorong.core.errors import PayloadError, StoreError
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.runtime import open_influx, open_sessions
from lorong.storage.tables import DeadLetterRow, DeviceRow

app = typer.Typer(help="MQTT payloads into validated readings in InfluxDB.", no_args_is_help=True)
dead_app = typer.Typer(help="Rejected messages kept for inspection and replay.", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")
console = Console()


def build(settings: Settings) -> Ingester:
    """An :class:`Ingester` wired to the configured broker, InfluxDB and database."""
    sessions = open_sessions(settings)
    return Ingester(settings, RegistryLookup(sessions, default_city=settings.city.id), DeadLetterStore(sessions),
                    open_influx(settings))


def build_retiring(settings: Settings, topic: str) -> RetiringIngester:
    """A :class:`ingest.handover.RetiringIngester` wired like :func:`build`."""
    sessions = open_sessions(settings, upgrade=False)
    return RetiringIngester(settings, RegistryLookup(sessions, default_city=settings.city.id),
                            DeadLetterStore(sessions), open_influx(settings), topic)


def _policy(settings: Settings) -> Policy:
    return Policy(settings.ingest.max_future_s, settings.ingest.min_year)


def _fail(message: str) -> typer.Exit:
    # brackets in it are text, not rich markup; one line even in an 80-column pipe
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(1)


def _csv_devices(path: Path, default_city: str) -> StaticDevices:
    """The non-retired devices of a registry CSV (``lorong devices export`` layout); a row without
    ``city_id`` is in ``default_city``."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = read_devices(fh)
    except CsvProblems as exc:
        raise _fail(f"{path}: {exc}") from None
    return StaticDevices(to_info(DeviceRow(**d.model_dump()), default_city) for _, d in rows if d.status != "retired")


def _registry_devices(settings: Settings) -> DeviceLookup:
    """The registry's devices, read without migrating or creating the database."""
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise _fail(f"no registry database at {url}; pass --devices devices.csv to replay offline")
    return RegistryLookup(open_sessions(settings, upgrade=False), default_city=settings.city.id)


@app.command("run")
def run(
    workers: int = typer.Option(1, "--workers", min=1, max=MAX_WORKERS,
                                help="ingester processes in one $share group (own client ids, spools, ports)"),
    group: str = typer.Option("lorong", "--group", help="share group name when --workers > 1"),
) -> None:
    """Subscribe and ingest until SIGINT/SIGTERM; pending points are flushed on exit.

    Switching between one ingester and ``--workers N`` first takes over from the other mode's
    sessions (:mod:`ingest.handover`).
    """
    settings = Settings()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if workers > 1:
        try:
            code = run_workers(settings, workers, group, done, build_retiring)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        raise typer.Exit(code)
    ingester = build(settings)  # holds this ingester's spool lock from here on
    try:
        handed_over = hand_over(settings, [settings.mqtt], build_retiring, done)
    except BaseException:
        ingester.spool.close()
        raise
    if not handed_over:  # stopped meanwhile
        ingester.spool.close()
        return
    # everything built so far (modules, registry cache) lives as long as the process: keep it out
    # of the collector's full passes, which otherwise rescan it while messages stream through
    gc.collect()
    gc.freeze()
    ingester.start()
    if settings.ingest.source == "nats":
        print(f"ingesting from NATS {', '.join(settings.nats.servers)} consumer {settings.nats.durable} "
              f"topics {', '.join(settings.mqtt.topics)}")
    else:
        print(f"ingesting from {settings.mqtt.host}:{settings.mqtt.port} topics {', '.join(settings.mqtt.topics)}")
    done.wait()
    ingester.stop()


@app.command("replay")
def replay(
    capture: Path = typer.Argument(..., exists=True, dir_okay=False, help="file of <topic><TAB><payload> lines"),
    fmt: str | None = typer.Option(None, "--format", help="parse every line with this format "
                                   "(default: by topic); see `lorong ingest formats`"),
    devices: Path | None = typer.Option(None, "--devices", exists=True, dir_okay=False,
                                        help="registry CSV to use instead of the database (offline)"),
    received_at: datetime | None = typer.Option(None, "--received-at", formats=["%Y-%m-%dT%H:%M:%S%z"],
                                                help="receive time for every message (default: now)"),
) -> None:
    """Parse and validate a capture; print readings and rejects as JSON lines; write nothing.

    A summary goes to stderr. Exit status 0 even when messages are rejected.
    """
    if fmt is not None and fmt not in FORMATS:
        raise _fail(f"unknown format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    settings = Settings()
    lookup = _csv_devices(devices, settings.city.id) if devices is not None else _registry_devices(settings)
    if fmt is None:
        pipeline = Pipeline(lookup, _policy(settings), max_payload_bytes=settings.ingest.max_payload_bytes)
    else:
        name = fmt
        pipeline = Pipeline(lookup, _policy(settings), format_of=lambda _t: name,
                            max_payload_bytes=settings.ingest.max_payload_bytes)
    counts: Counter[str] = Counter()
    with capture.open(encoding="utf-8", errors="surrogateescape") as fh:
        for record in replay_capture(fh, pipeline, received_at or utcnow(), counts):
            print(json.dumps(record, ensure_ascii=False))
    print(f"{counts['received']} messages: {counts['accepted']} accepted, {counts['rejected']} rejected, "
          f"{counts['duplicate']} duplicates", file=sys.stderr)


@app.command("decode")
def decode(
    hex_payload: str = typer.Argument(..., help="FRMPayload as hex"),
    codec: str = typer.Option(..., "--codec", help="codec id, see `lorong ingest formats`"),
    fport: int = typer.Option(..., "--fport", help="LoRaWAN FPort"),
) -> None:
    """Decode LoRaWAN bytes with a codec and print the canonical readings as JSON; a payload or codec it
    cannot decode is one ``error:`` line (reason code and detail, as the dead-letter store keeps them)."""
    try:
        readings = decode_hex(codec, fport, hex_payload)
    except PayloadError as exc:
        raise _fail(f"{exc.reason}: {exc.detail}") from None
    print(json.dumps([{**r._asdict(), "ts": r.ts.isoformat() if r.ts else None} for r in readings], indent=2))


@app.command("formats")
def formats() -> None:
    """List payload formats (with their default topics) and LoRaWAN codecs."""
    for name, parse in FORMATS.items():
        module = inspect.getmodule(parse)
        summary = (module.__doc__ or "").strip().splitlines()[0].replace("``", "") if module else ""
        print(f"format {name:16s} topics {', '.join(TOPICS[name]):34s} {summary}")
    for cid in sorted(CODECS):
        print(f"codec  {cid}")


def dead_letter_lines(rows: Sequence[DeadLetterRow], width: int) -> list[str]:
    """``dead-letters list`` as text lines: per letter, one line of what tells it apart (id, receive time
    in UTC, reason code, device, payload bytes), each whole, and under it, indented, its topic and its
    detail (wrapped at spaces to ``width`` columns) and when it was replayed. A table of all eight fields
    cut the reason code and the device at 80 columns (``unknown…``), the width of a pipe or an SSH session.
    """
    w_id = max(len("id"), *(len(str(r.id)) for r in rows))
    w_reason = max(len("reason"), *(len(r.reason) for r in rows))
    w_device = max(len("device"), *(len(r.device_id or "-") for r in rows))
    indent = " " * (w_id + 2)
    out = [f"{'id':>{w_id}}  {'received (UTC)':<19}  {'reason':<{w_reason}}  {'device':<{w_device}}  bytes"]
    for r in rows:
        out.append(f"{r.id:>{w_id}}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.reason:<{w_reason}}  "
                   f"{r.device_id or '-':<{w_device}}  {len(r.payload):>5}")
        out.append(indent + r.topic)  # whole, even past the width: a topic is copied, not read
        detail = r.detail + (f" (replayed {r.replayed_at:%Y-%m-%d %H:%M})" if r.replayed_at else "")
        out += textwrap.wrap(detail, max(width, len(indent) + 20), initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False) or []
    return out


@dead_app.command("list")
def dead_list(
    reason: str | None = typer.Option(None, "--reason", help="only this reason code"),
    limit: int = typer.Option(50, min=1, max=100_000, help="newest N"),
    all_: bool = typer.Option(False, "--all", help="include replayed ones"),
    payload: bool = typer.Option(False, "--payload", help="print each payload below the table (text as is, "
                                 "other bytes as hex)"),
) -> None:
    """Show dead letters, newest first, and the pending count per reason."""
    store = DeadLetterStore(open_sessions(Settings()))
    rows = store.list(reason=reason, limit=limit, pending_only=not all_)
    pending, replayed = store.counts_by_reason(replayed=False), store.counts_by_reason(replayed=True)
    if rows:
        for line in dead_letter_lines(rows, console.width):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if payload:
            for row in rows:
                raw = bytes(row.payload)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = "hex " + raw.hex()
                console.print(f"{row.id} {row.topic}: {text}", highlight=False, markup=False, soft_wrap=True)
    else:
        what = f"with reason {reason!r} " if reason else ""
        console.print(f"no {'' if all_ else 'pending '}dead letters {what}"
                      + ("" if all_ else "(--all includes replayed ones)"), highlight=False)
    console.print(f"{store.count(pending_only=True)} pending of {store.count()}; pending by reason: "
                  + (", ".join(f"{r} {n}" for r, n in sorted(pending.items())) or "none")
                  + ("; replayed: " + ", ".join(f"{r} {n}" for r, n in sorted(replayed.items())) if replayed else ""),
                  highlight=False, soft_wrap=True)


@dead_app.command("replay")
def dead_replay(
    reason: str | None = typer.Option(None, "--reason", help="only this reason code"),
    limit: int = typer.Option(10_000, min=1, max=1_000_000, help="at most N (the newest)"),
) -> None:
    """Re-process pending dead letters; write those that now pass to InfluxDB and mark them
    replayed; the rest stay pending."""
    settings = Settings()
    sessions = open_sessions(settings)
    pipeline = Pipeline(RegistryLookup(sessions, default_city=settings.city.id), _policy(settings),
                        max_payload_bytes=settings.ingest.max_payload_bytes)
    influx = open_influx(settings)
    try:
        influx.create_database(settings.influx.retention)
        report = replay_dead_letters(DeadLetterStore(sessions), pipeline, influx.write_lines, utcnow(),
                                     reason=reason, limit=limit, batch_size=settings.ingest.batch_size)
    except StoreError as exc:
        raise _fail(f"InfluxDB write failed, nothing marked replayed: {exc}") from None
    finally:
        influx.close()
    still = Counter(report.still_rejected.values())
    if not report.replayed and not report.still_rejected:
        pending = DeadLetterStore(sessions).counts_by_reason()
        what = f" with reason {reason!r}" if reason else ""
        console.print(f"no pending dead letters{what}; all dead letters by reason: "
                      + (", ".join(f"{r} {n}" for r, n in sorted(pending.items())) or "none"),
                      highlight=False, soft_wrap=True)
        return
    console.print(f"replayed {len(report.replayed)} ({report.points} points written); "
                  f"{len(report.still_rejected)} still rejected"
                  + (": " + ", ".join(f"{r} {n}" for r, n in sorted(still.items())) if still else ""))
