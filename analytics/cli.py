"""``lorong analytics``: run the job once or on a schedule, plan collection routes, backfill pickups,
inspect the notification outbox."""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import typer

from analytics import pickups, routes
from analytics.jobs import run_once
from analytics.notify import build_notifiers, build_outbox
from analytics.scheduler import Scheduler
from core.model import utcnow
from core.settings import Settings
from devices.registry import list_devices
from storage.runtime import open_influx, open_sessions

app = typer.Typer(help="Alerts for full bins, sensor faults and pollution; collection routes.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr and return the exit to raise (2: bad input)."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _when(now: str | None) -> datetime:
    if now is None:
        return utcnow()
    try:
        ts = datetime.fromisoformat(now)
    except ValueError:
        raise _fail(f"--now {now!r} is not an ISO-8601 time; use e.g. 2026-11-30T10:00+08:00") from None
    if ts.tzinfo is None:
        raise _fail("--now needs an offset, e.g. 2026-11-30T10:00+08:00")
    return ts.astimezone(UTC)


@app.command("run-once")
def run_once_cmd(
    now: str | None = typer.Option(None, help="run as of this ISO-8601 time (default: now)"),
    forecast: bool = typer.Option(True, help="recompute fill forecasts"),
    notify: bool = typer.Option(True, help="queue and send alert changes (MQTT, webhook); --no-notify: "
                                           "nobody is ever told about this run's changes"),
) -> None:
    """Run every rule once and print what changed as JSON."""
    settings = Settings()
    influx = open_influx(settings)
    sessions = open_sessions(settings)
    notifiers, close = build_notifiers(settings, influx) if notify else ([], lambda: None)
    outbox = build_outbox(settings, sessions) if notify else None
    try:
        report = run_once(sessions, influx, settings.analytics, notifiers, now=_when(now), forecast=forecast,
                          outbox=outbox)
    finally:
        close()
        if outbox is not None:
            outbox.close()
    print(json.dumps(asdict(report)))


@app.command("schedule")
def schedule() -> None:
    """Run the job every `analytics.interval_s` seconds until SIGINT/SIGTERM."""
    settings = Settings()
    influx = open_influx(settings)
    sessions = open_sessions(settings)
    notifiers, close = build_notifiers(settings, influx)
    outbox = build_outbox(settings, sessions)
    sched = Scheduler(sessions, influx, settings.analytics, notifiers, outbox=outbox)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sched.start()
    done.wait()
    sched.stop()
    close()
    outbox.close()


def _iso(ts: datetime | None) -> str:
    return ts.isoformat(timespec="seconds") if ts else "-"


@app.command("outbox")
def outbox_cmd(
    retry_failed: bool = typer.Option(False, "--retry-failed", help="re-queue the notifications a receiver refused"),
    channel: str | None = typer.Option(None, help="with --retry-failed: only this channel (mqtt, webhook)"),
) -> None:
    """Undelivered alert notifications per channel: pending, refused (failed), the oldest pending."""
    settings = Settings()
    outbox = build_outbox(settings, open_sessions(settings))
    try:
        if retry_failed:
            print(f"re-queued {_plural(outbox.retry_failed(channel), 'failed notification')}")
        rows = outbox.status()
    finally:
        outbox.close()
    print(f"{'channel':<10} {'pending':>7} {'failed':>6}  {'oldest pending':<25} {'attempts':>8}  "
          f"{'next attempt':<25} last error")
    for r in rows:
        print(f"{r.channel:<10} {r.pending:>7} {r.failed:>6}  {_iso(r.oldest_pending_at):<25} {r.oldest_attempts:>8}  "
              f"{_iso(r.next_attempt_at):<25} {(r.last_error or '-').splitlines()[0][:120]}")


def _latlon(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter("use LAT,LON in degrees, e.g. -5.135,119.423") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise typer.BadParameter("latitude must be in -90..90 and longitude in -180..180")
    return lat, lon


@app.command("route")
def route(
    depot: str = typer.Option(..., help="LAT,LON of the depot"),
    vehicles: int = typer.Option(..., min=1, help="trucks available"),
    capacity: int = typer.Option(..., min=1, help="litres each truck carries"),
    now: str | None = typer.Option(None, help="plan as of this ISO-8601 time (default: now)"),
    time_limit: float = typer.Option(2.0, min=0.1, help="solver time limit, seconds"),
    bin_litres: float = typer.Option(routes.DEFAULT_BIN_L, min=1, help="volume of a bin without capacity_l"),
) -> None:
    """Order full and soon-full bins into routes (CVRP, OR-Tools), print them, save today's plan."""
    settings = Settings()
    at, home = _when(now), _latlon(depot)
    with open_sessions(settings)() as session:
        stops = routes.select_stops(session, settings.analytics, at, bin_litres)
        try:
            plan = routes.solve(home, stops, vehicles, capacity, time_limit)
        except routes.TruckTooSmall as exc:
            raise _fail(f"{exc}: use --capacity {exc.stop.demand_l} or more") from None
        day = routes.save(session, plan, at, settings.analytics.timezone, home, capacity)
        kept = 0 if plan.routes else routes.saved_routes(session, day)
        session.commit()
    print(f"{day}: {_plural(len(stops), 'bin')}, {_plural(len(plan.routes), 'route')}, {plan.distance_km:.2f} km")
    if not plan.routes:
        print(f"nothing planned: the saved plan for {day} ({_plural(kept, 'route')}) is kept" if kept
              else f"nothing planned; no plan saved for {day}")
    for r in plan.routes:
        print(f"vehicle {r.vehicle}: {_plural(len(r.stops), 'stop')}, {r.load_l} L of {capacity} L, "
              f"{r.distance_km:.2f} km")
        for n, s in enumerate(r.stops, start=1):
            level = "?" if s.level is None else f"{s.level:.0%}"
            print(f"  {n:3d}. {s.device_id}  {s.lat:.5f},{s.lon:.5f}  fill {level}  {s.demand_l} L")
    if plan.dropped:
        print(f"not planned (no room): {', '.join(s.device_id for s in plan.dropped)}")


@app.command("collections")
def collections(
    hours: float = typer.Option(24.0, min=0.1, help="how far back to look for pickups"),
    now: str | None = typer.Option(None, help="end of the window, ISO-8601 (default: now)"),
) -> None:
    """Backfill pickups after an outage of the job: InfluxDB computes the steps, new ones are stored."""
    settings = Settings()
    end = _when(now)
    influx = open_influx(settings)
    found = pickups.detect_in_influx(influx, end - timedelta(hours=hours), end, settings.analytics.pickup_min_drop)
    with open_sessions(settings)() as session:
        kec = {d.id: d.kecamatan for d in list_devices(session)}
        new = pickups.record(session, influx, found, kec)
        session.commit()
    print(f"{len(found)} pickups found, {len(new)} new")
