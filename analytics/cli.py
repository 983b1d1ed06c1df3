"""``lorong analytics``: run the job once or on a schedule, plan collection routes, backfill pickups,
inspect the notification outbox."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from analytics import pickups, routes
from analytics import replay as replaying
from analytics import score as scoring
from analytics.escalation import Escalation
from analytics.jobs import run_once
from analytics.notify import build_notifiers, build_outbox, start_telegram_updates
from analytics.outbox import Outbox
from analytics.scheduler import Scheduler
from devices.cities import city_settings, find_city, get_city, list_cities, resolve_city
from devices.registry import list_devices
from lorong.core.errors import ConfigError, DatabaseUnavailable, UnknownCity
from lorong.core.model import utcnow
from lorong.core.settings import Settings
from lorong.storage.db import is_lock
from lorong.storage.runtime import open_influx, open_sessions

app = typer.Typer(help="Alerts for full bins, sensor faults and pollution; collection routes.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` as one line on stderr and return the exit to raise (2: bad input)."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


LOCKED_RETRY_S = 300.0
"""How long ``run-once`` keeps trying a write-locked database by default (a backup or migration)."""


def is_locked(exc: BaseException) -> bool:
    """True for a database error that means "another process holds the write lock" (SQLite
    ``database is locked``, PostgreSQL ``lock_timeout``), which is worth trying again: run_once's
    :class:`DatabaseUnavailable` with ``locked`` set, or a driver error :func:`lorong.storage.db.is_lock`
    recognises."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.locked
    return isinstance(exc, OperationalError) and is_lock(exc)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _when(now: str | None, flag: str = "--now") -> datetime:
    if now is None:
        return utcnow()
    try:
        ts = datetime.fromisoformat(now)
    except ValueError:
        raise _fail(f"{flag} {now!r} is not an ISO-8601 time; use e.g. 2026-11-30T10:00+08:00") from None
    if ts.tzinfo is None:
        raise _fail(f"{flag} needs an offset, e.g. 2026-11-30T10:00+08:00")
    return ts.astimezone(UTC)


@app.command("run-once")
def run_once_cmd(
    now: str | None = typer.Option(None, help="run as of this ISO-8601 time (default: now)"),
    forecast: bool = typer.Option(True, help="recompute fill forecasts"),
    notify: bool = typer.Option(True, help="queue and send alert changes (MQTT, webhook); --no-notify: "
                                           "nobody is ever told about this run's changes"),
    retry_for: float = typer.Option(LOCKED_RETRY_S, min=0, help="seconds to keep trying while the database is "
                                    "write-locked by another process (0: fail at once)"),
) -> None:
    """Run every rule once and print what changed as JSON.

    A database that stays write-locked longer than its own busy timeout (SQLite: 30 s) is tried
    again, with waits doubling from 1 s up to 30 s, for ``--retry-for`` seconds (each run is one
    transaction per step, so a failed try leaves nothing half-done).
    """
    settings = Settings()
    influx = open_influx(settings)
    sessions = open_sessions(settings)
    notifiers, close = build_notifiers(settings, influx) if notify else ([], lambda: None)
    outbox = _outbox(settings, sessions) if notify else None
    at = _when(now)
    escalation = Escalation.from_settings(settings.notify) if notify else None

    def tell(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        typer.echo(f"database is locked by another process ({exc}); trying again in {wait:.0f} s", err=True)

    try:
        for attempt in Retrying(retry=retry_if_exception(is_locked), stop=stop_after_delay(retry_for),
                                wait=wait_exponential(multiplier=1, max=30), before_sleep=tell, reraise=True):
            with attempt:
                report = run_once(sessions, influx, settings.analytics, notifiers, now=at, forecast=forecast,
                                  outbox=outbox, escalation=escalation)
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
    outbox = _outbox(settings, sessions)
    sched = Scheduler(sessions, influx, settings.analytics, notifiers, outbox=outbox,
                      escalation=Escalation.from_settings(settings.notify))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sched.start()
    join_telegram = start_telegram_updates(settings, sessions, outbox, done, influx)  # the linked chats' buttons
    done.wait()
    sched.stop()
    join_telegram()
    close()
    outbox.close()


def _outbox(settings: Settings, sessions: Any) -> Outbox:
    """:func:`build_outbox`, or one `error:` line naming the setting to mend."""
    try:
        return build_outbox(settings, sessions)
    except ConfigError as exc:
        raise _fail(str(exc), 1) from None


def _iso(ts: datetime | None) -> str:
    return ts.isoformat(timespec="seconds") if ts else "-"


@app.command("outbox")
def outbox_cmd(
    retry_failed: bool = typer.Option(False, "--retry-failed", help="re-queue the notifications a receiver refused"),
    channel: str | None = typer.Option(None, help="with --retry-failed: only this channel (mqtt, webhook, "
                                                  "telegram:<chat name>)"),
) -> None:
    """Undelivered alert notifications per channel: pending, refused (failed), the oldest pending."""
    settings = Settings()
    outbox = _outbox(settings, open_sessions(settings))
    try:
        if retry_failed:
            print(f"re-queued {_plural(outbox.retry_failed(channel), 'failed notification')}")
        rows = outbox.status()
    finally:
        outbox.close()
    w = max([10, *(len(r.channel) for r in rows)])
    print(f"{'channel':<{w}} {'pending':>7} {'failed':>6}  {'oldest pending':<25} {'attempts':>8}  "
          f"{'next attempt':<25} last error")
    for r in rows:
        print(f"{r.channel:<{w}} {r.pending:>7} {r.failed:>6}  {_iso(r.oldest_pending_at):<25} {r.oldest_attempts:>8}  "
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
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, save nothing (today's saved plan stays)"),
    city: str | None = typer.Option(None, help="the city whose bins to plan (needed when the registry has several)"),
) -> None:
    """Order full and soon-full bins into routes (CVRP, OR-Tools), print them, save today's plan (it replaces
    the day's saved one; --dry-run only prints).

    A plan is one city's: its bins, its rounds and its "today" in its time zone (a registry of one city
    plans that city without --city).

    A depot farther than :data:`analytics.routes.DEPOT_MAX_KM` (100 km, a truck's shift: see there)
    from the city's map centre (or the mean position of its bins) is one `error:` line naming the
    distance and the centre, and nothing is planned or saved (another city's depot, typed by mistake)."""
    settings = Settings()
    at, home = _when(now), _latlon(depot)
    with open_sessions(settings)() as session:
        try:
            row = get_city(session, resolve_city(session, city))
        except UnknownCity as exc:
            ids = [c.id for c in list_cities(session)]
            raise _fail(f"name the city: --city {' or '.join(ids)}" if city is None and len(ids) > 1
                        else str(exc)) from None
        try:
            routes.check_depot(session, row, home)
        except routes.DepotTooFar as exc:
            raise _fail(str(exc)) from None
        cfg = city_settings(settings.analytics, row)
        named = f"{row.id} " if len(list_cities(session)) > 1 else ""  # a registry of one city: as before cities
        stops = routes.select_stops(session, cfg, at, bin_litres, city=row.id)
        stale = routes.stale_since(session, cfg, at, city=row.id)
        active, seen = routes.bins_seen(session, row.id)
        if active and not seen:
            print(f"warning: the analytics job has seen no reading of these {active} bins yet: nothing to plan "
                  "from; run `lorong analytics run-once` (or `lorong analytics schedule`) first", file=sys.stderr)
        elif stale is not None:
            local = stale.astimezone(ZoneInfo(cfg.timezone))
            print(f"warning: the newest reading of these bins is {(at - stale).total_seconds() / 3600:.1f} h old "
                  f"({local:%Y-%m-%d %H:%M} {local.tzname()}): the plan uses the levels of then; are the ingester "
                  "and InfluxDB running?", file=sys.stderr)
        try:
            plan = routes.solve(home, stops, vehicles, capacity, time_limit)
        except routes.TruckTooSmall as exc:
            raise _fail(f"{exc}: use --capacity {exc.stop.demand_l} or more") from None
        except ValueError as exc:
            raise _fail(f"no route plan: {exc}") from None
        if dry_run:
            day = routes.plan_day(at, cfg)
            kept = routes.saved_routes(session, day, row.id)
        else:
            day = routes.save(session, plan, at, cfg, home, capacity, city=row.id)
            kept = 0 if plan.routes else routes.saved_routes(session, day, row.id)
            session.commit()
    print(f"{named}{day}: {_plural(len(stops), 'bin')}, {_plural(len(plan.routes), 'route')}, "
          f"{plan.distance_km:.2f} km")
    if dry_run:
        _print_routes(plan, capacity)
        print(f"dry run: nothing saved; the saved plan for {day} ({_plural(kept, 'route')}) is unchanged" if kept
              else f"dry run: nothing saved; there is no saved plan for {day}")
        return
    if not plan.routes:
        print(f"nothing planned: the saved plan for {day} ({_plural(kept, 'route')}) is kept" if kept
              else f"nothing planned; no plan saved for {day}")
    _print_routes(plan, capacity)


def _print_routes(plan: routes.Plan, capacity: int) -> None:
    for r in plan.routes:
        print(f"vehicle {r.vehicle}: {_plural(len(r.stops), 'stop')}, {r.load_l} L of {capacity} L, "
              f"{r.distance_km:.2f} km")
        w_id = max((len(s.device_id) for s in r.stops), default=0)  # DevEUIs beside MKS-BIN-... line up
        w_l = max((len(str(s.demand_l)) for s in r.stops), default=0)
        for n, s in enumerate(r.stops, start=1):
            level = "?" if s.level is None else f"{s.level:.0%}"
            print(f"  {n:3d}. {s.device_id:<{w_id}}  {s.lat:.5f},{s.lon:.5f}  fill {level:>4}  {s.demand_l:>{w_l}} L")
    if plan.dropped:
        print(f"not planned (no room): {', '.join(s.device_id for s in plan.dropped)}")


@app.command("collections")
def collections(
    hours: float = typer.Option(24.0, min=0.1, help="how far back to look for pickups"),
    now: str | None = typer.Option(None, help="end of the window, ISO-8601 (default: now)"),
    city: str | None = typer.Option(None, help="list this city's pickups only (default: every city's)"),
) -> None:
    """List the pickups of the last --hours (sensor-detected and reported by a person), oldest first, each
    in its city's time zone (the registry city of its device; ``analytics.timezone`` for a device not in
    the registry), with a city column when the registry has several cities; first backfill them
    (InfluxDB computes the steps; new ones are stored and marked ``new``), so pickups missed during an
    outage of the job are there too. With --city, that city's pickups only, backfilled with its
    ``pickup_min_drop``; the window's end is printed in the listed city's zone (UTC for several).

    An unknown --city is one `error:` line naming the known ids (exit 2)."""
    settings = Settings()
    end = _when(now)
    start = end - timedelta(hours=hours)
    with open_sessions(settings)() as session:
        try:
            row = find_city(session, city) if city is not None else None
        except UnknownCity as exc:
            raise _fail(str(exc)) from None
        cities = list_cities(session)
        zones = {c.id: ZoneInfo(c.timezone) for c in cities}
        devices = {d.id: d for d in list_devices(session, include_retired=True)}
        mine = None if row is None else {d.id for d in devices.values() if d.city_id == row.id}
        min_drop = (settings.analytics.pickup_min_drop if row is None
                    else city_settings(settings.analytics, row).pickup_min_drop)
        found, new = pickups.backfill(session, open_influx(settings), start, end, min_drop, mine)
        session.commit()
        rows = [r for r in pickups.stored(session, start, end) if mine is None or r.device_id in mine]
    default = ZoneInfo(settings.analytics.timezone)
    city_of = {d: dev.city_id for d, dev in devices.items()}
    kec = {d: dev.kecamatan or "" for d, dev in devices.items()}
    if row is not None:
        tz = zones[row.id]
    elif len(cities) == 1:
        tz = zones[cities[0].id]
    else:
        tz = default if not cities else ZoneInfo("UTC")
    column = len(cities) > 1  # a registry of one city: as before cities
    fresh = {(p.device_id, p.at) for p in new}
    w_city = max([0, *(len(city_of.get(r.device_id, "?")) for r in rows)])
    w_dev = max([0, *(len(r.device_id) for r in rows)])
    w_kec = max([0, *(len(kec.get(r.device_id, "")) for r in rows)])

    def level(x: float | None) -> str:
        return "?" if x is None else f"{x:.2f}"

    for r in rows:
        who = r.actor or r.source if r.source != "sensor" else "sensor"
        mark = "  new" if (r.device_id, r.at) in fresh else ""
        home = city_of.get(r.device_id)
        local = r.at.astimezone(zones.get(home or "", default))
        where = f"{home or '?':<{w_city}}  " if column else ""
        print(f"{local.isoformat(timespec='minutes')}  {where}{r.device_id:<{w_dev}}  "
              f"{kec.get(r.device_id, ''):<{w_kec}}  {level(r.level_before)} -> {level(r.level_after):<4}  {who}{mark}")
    by_sensor = sum(1 for r in rows if r.source == "sensor")
    print(f"{_plural(len(rows), 'pickup')} in the {hours:g} h to {end.astimezone(tz).isoformat(timespec='minutes')} "
          f"({by_sensor} by sensor, {len(rows) - by_sensor} by crew); backfill: {len(found)} found in InfluxDB, "
          f"{len(new)} new")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _step(text: str) -> timedelta:
    """``30s``, ``10m``, ``1h``, ``1.5h``, ``1d`` as a positive time span."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if m is None or float(m[1]) <= 0:
        raise _fail(f"--step {text!r}: use a positive number and a unit s, m, h or d, e.g. 10m")
    return timedelta(seconds=float(m[1]) * _UNITS[m[2]])


def _truth_path(path: Path) -> Path:
    """A scenario's ``truth.json``: the file, or the one inside a scenario folder."""
    return path / "truth.json" if path.is_dir() else path


TRUTH_FILE = "the truth.json `lorong sim scenario --out DIR` writes"
"""What ``--truth`` should be, in error messages."""


def _load(path: Path, expected: str = "a truth.json or decisions.json") -> dict[str, Any]:
    try:
        return scoring.load(path, expected)
    except scoring.ScoreInputError as exc:
        raise _fail(str(exc)) from None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} {n}" for t, n in counts.items()) or "nothing"


@app.command("replay")
def replay_cmd(
    start: str | None = typer.Option(None, "--from", help="first step, ISO-8601 with an offset"),
    end: str | None = typer.Option(None, "--to", help="last step (included), ISO-8601 with an offset"),
    truth: Path | None = typer.Option(None, help="a scenario's truth.json (or its folder): its start and end "
                                                 "stand in for a missing --from / --to"),
    step: str = typer.Option("10m", help="time between runs: 30s, 10m, 1h"),
    out: Path = typer.Option(Path("decisions.json"), help="where to write the decisions JSON"),
    check_every: int = typer.Option(1, min=0, help="run every K-th step twice and record what the repeat "
                                                   "changed (0: never)"),
    reset: bool = typer.Option(False, help="first delete the alerts, pickups and device_latest rows a "
                                           "previous replay left in the database"),
) -> None:
    """Step the analytics job through past time (notifications off) and write its decisions as JSON:
    alerts opened, pickups, forecasts, idempotency; `lorong analytics score` compares them with the truth."""
    doc = _load(_truth_path(truth), TRUTH_FILE) if truth is not None else {}
    start = start or doc.get("start")
    end = end or doc.get("end")
    if start is None or end is None:
        raise _fail("give --from and --to, or --truth FILE")
    t1, t2, dt = _when(start, "--from"), _when(end, "--to"), _step(step)
    if t2 < t1:
        raise _fail(f"--to {t2.isoformat()} is before --from {t1.isoformat()}")
    settings = Settings()
    influx = open_influx(settings)
    sessions = open_sessions(settings)
    if reset:
        try:
            replaying.reset(sessions)
        except replaying.ReplayError as exc:
            raise _fail(str(exc)) from None
    left = replaying.leftovers(sessions, t1)
    if left:
        raise _fail(f"the database already holds the job's output from {t1.isoformat()} on "
                    f"({_counts(left)}): replay into a database of its own, or --reset one only replays use")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # one line per pickup per step drowns the progress
        logging.getLogger("analytics.pickups").setLevel(logging.WARNING)
    t0 = time.perf_counter()

    def progress(now: datetime, done: int, total: int, opened: dict[str, int]) -> None:
        print(f"{now.isoformat(timespec='minutes')}  step {done}/{total}  {time.perf_counter() - t0:.0f} s  "
              f"opened: {_counts(opened)}", flush=True)

    decisions = replaying.replay(sessions, influx, settings.analytics, t1, t2, dt, check_every, progress)
    if "seed" in doc:
        decisions.scenario = {"city": doc.get("city"), "seed": doc.get("seed")}
    try:
        replaying.write_decisions(decisions, out)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc}", 1) from None
    runs = decisions.steps + decisions.checked
    print(f"{_plural(decisions.steps, 'step')} of {dt.total_seconds():g} s, {decisions.checked} repeated, "
          f"in {decisions.seconds:.1f} s ({1000 * decisions.seconds / max(runs, 1):.0f} ms per run)")
    print(f"alerts opened: {_counts(decisions.opened_by_type())}")
    print(f"pickups: {len(decisions.pickups)}, forecasts: {len(decisions.forecasts)}, "
          f"idempotency: {len(decisions.changed)} of {decisions.checked} repeats changed something")
    print(f"wrote {out}")


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_score(report: scoring.ScoreReport) -> None:
    """Print ``report`` as rich tables: decisions, pickups, time to full, idempotency, routes, look-alikes, targets."""
    console = Console() if sys.stdout.isatty() else Console(width=150)
    t = Table(title=f"decisions (warm-up {report.warmup_h:g} h)")
    for col in ("decision", "required", "precision", "recall", "F1", "hits", "false", "re-opened", "missed",
                "ignored", "delay p50 min", "delay p90 min"):
        t.add_column(col, justify="left" if col == "decision" else "right")
    for d in report.decisions:
        lead = " (lead)" if d.timing == "lead" else ""
        t.add_row(d.type, str(d.required), _num(d.precision), _num(d.recall), _num(d.f1), str(d.hits),
                  str(d.false_alarms), str(d.reopens), str(d.misses), str(d.ignored),
                  _num(d.timing_p50_min, ".0f") + lead, _num(d.timing_p90_min, ".0f") + lead)
    console.print(t)
    p = report.pickups
    console.print(f"pickups: precision {_num(p.precision)}, recall {_num(p.recall)}, F1 {_num(p.f1)}; "
                  f"{p.hits} hits, {p.false} false, {p.misses} missed, {p.ignored} ignored "
                  f"({p.required} required of {p.truth}; {p.decisions} found), median offset "
                  f"{_num(p.offset_p50_min, '.1f')} min")
    tt = Table(title="time to full: |full_at - cross_at|, hours")
    for col in ("horizon h", "n", "median", "p90", "missing"):
        tt.add_column(col, justify="right")
    for b in report.ttf:
        tt.add_row(b.bucket, str(b.n), _num(b.median_h, ".2f"), _num(b.p90_h, ".2f"), str(b.n_missing))
    console.print(tt)
    console.print(f"idempotency: {report.idempotency_changed} of {report.idempotency_checked} repeated runs "
                  "changed something")
    if report.routes:
        console.print("routes: " + ", ".join(f"{k} {v}" for k, v in report.routes.items()))
    for lk in report.lookalikes:
        console.print(f"lookalike {lk.type} / {lk.what}: {lk.n}, fooled {lk.fooled}")
    unmet = scoring.targets_met(report)
    console.print("targets: all met" if not unmet else "targets not met:\n  " + "\n  ".join(unmet),
                  highlight=False)


@app.command("score")
def score_cmd(
    truth: Path = typer.Option(..., help="a scenario's truth.json (or its folder)"),
    decisions: Path = typer.Option(..., help="decisions JSON written by `lorong analytics replay`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    warmup_h: float = typer.Option(24.0, min=0, help="hours after the scenario's start left out (the job "
                                                     "needs a day of history); 0: none"),
) -> None:
    """Compare a replay's decisions with the scenario's truth: precision, recall and delay per alert type,
    pickups, time-to-full error by horizon, idempotency, routes (firmware_sim/SCENARIO.md, "Scoring")."""
    truth_doc = _load(_truth_path(truth), TRUTH_FILE)
    decisions_doc = _load(decisions, "the decisions.json `lorong analytics replay --out FILE` writes")
    try:
        report = scoring.score(truth_doc, decisions_doc, warmup_h)
    except scoring.ScoreInputError as exc:
        raise _fail(str(exc)) from None
    except (AttributeError, TypeError, ValueError) as exc:  # a list where an object belongs, and such
        raise _fail(f"malformed input: {exc}") from None
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        print_score(report)
