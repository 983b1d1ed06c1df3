"""The analytics job: read InfluxDB aggregates once, run every rule, keep alerts and derived values.

One run, as of ``now`` (injectable; every InfluxQL window ends there):

1. recent raw points of bins and stations (``recent_window_h``, 3 h by default): device_latest,
   debounce, flags, fire, battery, stuck, pickups;
2. pickups (:mod:`analytics.pickups`) stored in SQL and InfluxDB; the collection history;
3. hourly means and learned profiles for the fill forecasts (:mod:`analytics.bins`; the hours the raw
   points of 1 hold whole averaged from them, only the older ones read), each bin's expected pickup
   (:mod:`analytics.fillprofile`); ``device_latest`` refreshed meanwhile;
4. stations: last-hour PM2.5, 10-minute buckets scored for spikes, hourly means for ISPU/US AQI;
5. dead letters per device;
6. every rule of :data:`analytics.rules.RULES`, verdicts applied to the alert book;
7. ``device_latest.derived`` and the changes' ``notification_outbox`` rows; commit;
   ``bin_state``/``air_index`` points for Grafana (:mod:`analytics.state_points`); then the
   outbox is dispatched (:mod:`analytics.outbox`) and each change handed to the best-effort
   notifiers once.

InfluxDB answers in its own process, so the run reads it on two threads of its own while this one
does the SQL side: the raw points (1) while the devices, alerts and ``device_latest`` rows load, the
forecast's reads (3) while ``device_latest`` is refreshed. The session stays on the calling thread.

Safe to run twice: an active alert is extended, not reopened (and extending notifies nobody),
an alert a person cleared stays cleared until newer evidence arrives (:func:`apply`),
a pickup is stored once, derived values are overwritten with the same numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from analytics import air, bins, kappa_fit, pickups
from analytics.alerts import SYSTEM, AlertBook, Notifier
from analytics.escalation import Escalation, remind
from analytics.fillprofile import FillProfile, expected_pickup, round_end, typical_pickup
from analytics.frames import recent_points, runs_began
from analytics.latest import refresh_latest
from analytics.outbox import Outbox
from analytics.rules import RULES
from analytics.rules.base import Context, Device, DeviceSeries, Verdict, iso
from analytics.rules.pm25_episode import CITY
from analytics.state_points import state_lines
from lorong.core import alerts, schema
from lorong.core.errors import DatabaseUnavailable, StoreError, StoreUnavailable
from lorong.core.model import DEFAULT_REPORT_INTERVAL_S, DeviceKind, utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.db import is_unavailable, unavailable
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow, CityRow, DeadLetterRow, DeviceLatestRow, DeviceRow

log = logging.getLogger(__name__)

MAX_RECENT = timedelta(hours=24)
"""Upper bound of the raw window, whatever the slowest device's interval."""


@dataclass
class JobReport:
    """What one run did.

    Attributes:
        opened, extended, escalated, cleared: alert counts by type.
        held: raises dropped by type, because a person cleared that alert after the newest
            evidence (see :func:`apply`).
        latest_rows: device_latest rows refreshed.
        collections: new pickups recorded.
        forecasts: bins whose fill forecast was computed in this run (0 when reused).
        reminded: ids of the critical alerts nobody acknowledged that this run sent again to the
            supervisors (:mod:`analytics.escalation`).
        timings: seconds spent per phase.
        span: ``(start, end)`` of the run, ``time.monotonic()`` seconds (cities of one tick run
            side by side: their spans overlap).
    """

    opened: dict[str, int] = field(default_factory=dict)
    extended: dict[str, int] = field(default_factory=dict)
    escalated: dict[str, int] = field(default_factory=dict)
    cleared: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    latest_rows: int = 0
    collections: int = 0
    forecasts: int = 0
    reminded: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 0.0)

    def count(self, bucket: dict[str, int], type_: str) -> None:
        """Add one to ``bucket[type_]``."""
        bucket[type_] = bucket.get(type_, 0) + 1

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent in the block to ``timings[phase]`` (rounded to ms)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.perf_counter() - t0, 3)


def load_devices(session: Session, cfg: AnalyticsSettings,
                 city: str | None = None) -> tuple[dict[str, Device], dict[str, str], list[DeviceRow]]:
    """Active devices (registry status ``active``), of ``city`` only when given, each one's
    registry model string, and their registry rows (by id; the run's Grafana state points read
    them, so 20,000 rows are not selected twice)."""
    q = select(DeviceRow).where(DeviceRow.status == "active").order_by(DeviceRow.id)
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    rows = session.scalars(q).all()
    devices = {r.id: Device(r.id, DeviceKind(r.kind), r.kecamatan or "", r.model or "",
                            r.full_threshold or cfg.full_threshold, r.report_interval_s or DEFAULT_REPORT_INTERVAL_S,
                            r.installed_at or r.created_at) for r in rows}
    return devices, {r.id: r.model or "" for r in rows}, list(rows)


def recent_window(cfg: AnalyticsSettings, devices: dict[str, Device]) -> timedelta:
    """Raw window: ``recent_window_h``, or longer when ``stuck_readings`` (+1) readings of the
    slowest active device need it, at most :data:`MAX_RECENT`."""
    return window_of(cfg, (d.report_interval_s for d in devices.values()))


def window_of(cfg: AnalyticsSettings, intervals: Iterable[int]) -> timedelta:
    """:func:`recent_window` of devices reporting every ``intervals`` seconds."""
    need = max(intervals, default=0) * (max(cfg.stuck_readings, cfg.debounce_readings) + 1)
    return min(MAX_RECENT, max(timedelta(hours=cfg.recent_window_h), timedelta(seconds=need)))


def active_intervals(session: Session, city: str | None = None) -> list[int]:
    """The report intervals (s) of the active devices (of ``city`` when given), as :func:`load_devices`
    gives them (:data:`~lorong.core.model.DEFAULT_REPORT_INTERVAL_S` when the registry has none): one
    column, so a run learns its raw window (:func:`window_of`) and starts the raw read before the
    registry's rows are loaded (20,000 rows as objects took 0.5 s in front of it, bench/analytics_job.py)."""
    q = select(DeviceRow.report_interval_s).where(DeviceRow.status == "active")
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    return [s or DEFAULT_REPORT_INTERVAL_S for s in session.scalars(q)]


def reject_counts(session: Session, now: datetime, window_s: float,
                  known: set[str]) -> tuple[dict[str, dict[str, int]], dict[str, datetime]]:
    """Dead letters per registered device within ``(now - window_s, now]``.

    Returns:
        ``({device_id: {reason: count}}, {device_id: received_at of its newest dead letter})``.
    """
    q = select(DeadLetterRow.device_id, DeadLetterRow.reason, DeadLetterRow.received_at).where(
        DeadLetterRow.received_at > now - timedelta(seconds=window_s), DeadLetterRow.received_at <= now,
        DeadLetterRow.device_id.is_not(None))
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    newest: dict[str, datetime] = {}
    for dev, reason, at in session.execute(q):
        if dev in known:
            out[dev][reason] += 1
            newest[dev] = max(newest.get(dev, at), at)
    return {d: dict(r) for d, r in out.items()}, newest


ONCE_PER_CYCLE = (alerts.BIN_FULL_SOON.name,)
"""Alert types whose rules need to know when they last opened (one warning per fill cycle)."""


def last_openings(session: Session, now: datetime, types: Sequence[str],
                  lookback: timedelta = timedelta(days=3)) -> dict[tuple[str, str], datetime]:
    """The newest ``started_at`` of each device's alerts of ``types`` within ``(now - lookback, now]``."""
    q = (select(AlertRow.device_id, AlertRow.type, func.max(AlertRow.started_at))
         .where(AlertRow.type.in_(list(types)), AlertRow.started_at > now - lookback, AlertRow.started_at <= now)
         .group_by(AlertRow.device_id, AlertRow.type))
    return {(d, t): at for d, t, at in session.execute(q)}


def city_device(city: str) -> str:
    """Device id of a city's city-wide alerts (``pm25_episode``) when the job runs per city: the
    rules' pseudo-device ``city`` (:data:`analytics.rules.pm25_episode.CITY`) becomes ``city:<id>``,
    so each city has its own."""
    return f"{CITY}:{city}"


def city_view(active: Mapping[tuple[str, str], AlertRow], devices: Mapping[str, Device],
              city: str | None) -> dict[tuple[str, str], tuple[str, datetime]]:
    """The active alerts a run's rules see: every one in a single-city run (``city`` None); in a
    city's run, its devices' and its own city-wide ones (under the rules' pseudo-device ``city``)."""
    if city is None:
        return {k: (r.severity, r.started_at) for k, r in active.items()}
    own = city_device(city)
    return {(CITY if d == own else d, t): (r.severity, r.started_at) for (d, t), r in active.items()
            if d in devices or d == own}


def apply(book: AlertBook, verdicts: list[Verdict], now: datetime, report: JobReport,
          latest_ts: Mapping[str, datetime] | None = None, city: str | None = None) -> None:
    """Apply verdicts to the alert book; a clear of an alert that is not active is a no-op.

    A raise of an alert that a person cleared (:meth:`AlertBook.cleared_by_hand`) is dropped
    unless its evidence (``Verdict.evidence_at``, else the device's newest reading in
    ``latest_ts``) is newer than that clear, and counted in ``report.held``. In a city's run
    (``city`` given) the pseudo-device ``city`` is that city's (:func:`city_device`).
    """
    if city is not None:
        verdicts = [replace(v, device_id=city_device(city)) if v.device_id == CITY else v for v in verdicts]
    for v in verdicts:
        if v.clears:
            row = book.active(v.device_id, v.type)
            if row is not None:
                book.clear(row.id, now, SYSTEM, v.reason)
                report.count(report.cleared, v.type)
            continue
        assert v.severity is not None
        cleared_at = book.cleared_by_hand(v.device_id, v.type)
        if cleared_at is not None:
            evidence = v.evidence_at or (latest_ts or {}).get(v.device_id)
            if evidence is None or evidence <= cleared_at:
                report.count(report.held, v.type)
                continue
        _, what = book.raise_(v.device_id, v.type, v.severity, now, v.details, v.kecamatan)
        bucket = {"opened": report.opened, "extended": report.extended}.get(what, report.escalated)
        report.count(bucket, v.type)


def _air(ctx: Context, influx: InfluxClient, models: dict[str, str], report: JobReport) -> dict[str, dict[str, Any]]:
    stations = {d.device_id: models[d.device_id] for d in ctx.of_kind(DeviceKind.AIR)}
    if not stations:
        return {}
    corr = air.sensor_models(stations, ctx.cfg)
    with report.timed("air"):
        corr = kappa_fit.fitted_models(influx, ctx.now, ctx.cfg, corr, stations)
        ctx.air_1h = air.last_hour(influx, ctx.now, corr)
        profiles = air.station_profiles(influx, ctx.now, ctx.cfg, corr, stations)
        ctx.air_spikes = air.score_spikes(air.buckets(influx, ctx.now, ctx.cfg, corr, stations), ctx.now, ctx.cfg,
                                          horizon=air.SCORED, profiles=profiles)
        derived = air.aqi_derived(influx, ctx.now, corr)
    for device_id, row in derived.items():
        if device_id in ctx.air_1h.index:
            row["pm25_1h"] = round(float(cast(float, ctx.air_1h.at[device_id, "pm25"])), 2)
    return derived


def _pickups(ctx: Context, session: Session, influx: InfluxClient, recent_bins: pd.DataFrame, report: JobReport,
             city_of: dict[str, str], per_city: bool) -> tuple[dict[str, pickups.History], dict[str, pickups.History]]:
    """Record the pickups seen in the recent points; set ``ctx.pickups``; return the collection
    history (the city's own rounds only when ``per_city``) and every city's (what the fill profiles,
    learned once a day for every bin of a zone, read: :func:`analytics.bins.profiles`)."""
    bin_devs = list(ctx.of_kind(DeviceKind.BIN))
    with report.timed("pickups"):
        found = pickups.detect(recent_bins, ctx.cfg.pickup_min_drop)
        new = pickups.record(session, influx, found, {d.device_id: d.kecamatan for d in bin_devs}, city_of)
        report.collections = len(new)
        every = hist = pickups.history(session, ctx.now)
        if per_city:  # the city's own rounds only (round_end, expected pickups)
            hist = {d: h for d, h in hist.items() if d in city_of}
        ctx.pickups = {d: h.at[-1] for d, h in hist.items() if h.at}
    return hist, every


ForecastReads = tuple["Future[dict[str, DeviceSeries]]", "Future[dict[str, FillProfile]] | None"]
"""The forecast's two InfluxDB reads under way: hourly means, learned profiles (None when disabled)."""


def _start_forecast_reads(ctx: Context, influx: InfluxClient, reads: ThreadPoolExecutor,
                          hist: dict[str, pickups.History], recent_bins: pd.DataFrame,
                          window: timedelta, prefetch: Future[bins.HourlyReads] | None = None) -> ForecastReads:
    """Start the fill forecast's reads (:func:`analytics.bins.hourly_levels`, :func:`analytics.bins.profiles`)
    on ``reads``, so InfluxDB answers while the job refreshes ``device_latest``; needs ``ctx.pickups``
    and the bins' collection history ``hist``. The newest hours' means come from ``recent_bins``, the
    raw points of ``(now - window, now]`` the run read; the older ones from ``prefetch`` where it read them
    (:func:`analytics.bins.prefetch_hourly`)."""
    cfg = ctx.cfg
    ids = [d.device_id for d in ctx.of_kind(DeviceKind.BIN)]

    def levels() -> dict[str, DeviceSeries]:
        return bins.hourly_levels(influx, ctx.now, cfg.forecast_window_h, ids, last, recent_bins, ctx.now - window,
                                  prefetched=prefetch.result() if prefetch is not None else None)

    last = dict(ctx.pickups)
    hourly = reads.submit(levels)
    learned = reads.submit(bins.profiles, influx, ctx.now, ids, cfg.timezone, cfg.forecast_history_days, hist) \
        if cfg.forecast_history_days > 0 else None
    return hourly, learned


def _forecast(ctx: Context, hist: dict[str, pickups.History], latest: dict[str, DeviceLatestRow],
              under_way: ForecastReads | None, report: JobReport) -> dict[str, dict[str, Any]]:
    """Each bin's expected pickup and fill forecast: computed from the reads ``under_way`` (a forecast
    run), else the ones the last run stored; returns the bins' ``derived`` values."""
    bin_devs = list(ctx.of_kind(DeviceKind.BIN))
    with report.timed("forecast"):
        cfg = ctx.cfg
        no_pickups = pickups.History([], [])
        ats = [h.at for h in hist.values()]
        last_stop = round_end(ats, cfg.timezone, cfg.collection_times)
        usual = typical_pickup(ats, cfg.timezone, cfg.collection_times)
        ctx.expected_pickup = {d.device_id: expected_pickup(ctx.now, hist.get(d.device_id, no_pickups).at,
                                                            cfg.collection_times, cfg.collection_weekdays, cfg.timezone,
                                                            last_stop, usual)
                               for d in bin_devs}
        if under_way is not None:
            hourly = under_way[0].result()
            learned = under_way[1].result() if under_way[1] is not None else {}
            ctx.forecasts = bins.forecasts(bin_devs, hourly, {d.device_id: ctx.series(d.device_id) for d in bin_devs},
                                           ctx.pickups, hist, ctx.now, cfg.pickup_min_drop, learned,
                                           cfg.soon_slow_factor)
            report.forecasts = len(ctx.forecasts)
        else:
            # a stored forecast made before the bin's last pickup (its truck, or a crew's Emptied since)
            # speaks of the emptied waste: none until the next forecast run
            stored = {d.device_id: bins.from_derived(latest[d.device_id].derived or {})
                      for d in bin_devs if d.device_id in latest
                      and not _emptied_since(latest[d.device_id].derived or {}, ctx.pickups.get(d.device_id))}
            ctx.forecasts = {k: v for k, v in stored.items() if v is not None}
    made = {"forecast_at": iso(ctx.now)} if under_way is not None else {}
    return {d.device_id: {**bins.bin_derived(ctx.forecasts.get(d.device_id), ctx.pickups.get(d.device_id)),
                          "expected_pickup": iso(ctx.expected_pickup.get(d.device_id)), **made}
            for d in bin_devs}


def _emptied_since(derived: dict[str, Any], pickup: datetime | None) -> bool:
    """Whether ``pickup`` came after the stored forecast was made (``derived.forecast_at``; a forecast
    stored without that time counts as made before any pickup)."""
    if pickup is None:
        return False
    made = derived.get("forecast_at")
    return not isinstance(made, str) or pickup > datetime.fromisoformat(made)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested in dicts and lists) made ``None``: JSON has
    neither (RFC 8259, section 6), and SQLite's JSON functions refuse the whole document for one."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_derived(latest: dict[str, DeviceLatestRow], derived: dict[str, dict[str, Any]],
                  session: Session | None = None) -> None:
    """Merge analytics results into ``device_latest.derived`` (rows that exist only); a value that
    is not a finite number is stored as null (:func:`json_safe`: no corrected PM2.5 in an hour above
    the humidity correction's limit is no value, not NaN).

    With ``session``, the rows already in the database are updated in one executemany at once (the
    ORM's unit of work took seconds for 20,000 rows, bench/analytics_job.py) and their objects get the
    new values as if loaded; without it the objects are changed and the next flush writes them.
    """
    changed: list[dict[str, Any]] = []
    for device_id, values in derived.items():
        row = latest.get(device_id)
        if row is not None:
            merged = {**(row.derived or {}), **json_safe(values)}
            if merged != row.derived:
                if session is not None and sa_inspect(row).persistent:
                    changed.append({"b_id": device_id, "b_derived": merged})
                    set_committed_value(row, "derived", merged)
                else:
                    row.derived = merged
    if changed and session is not None:
        table = cast(Table, DeviceLatestRow.__table__)
        session.execute(update(table).where(table.c.device_id == bindparam("b_id"))
                        .values(derived=bindparam("b_derived")), changed)


def run_once(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
             notifiers: list[Notifier] | None = None, now: datetime | None = None, forecast: bool = True,
             outbox: Outbox | None = None, escalation: Escalation | None = None,
             city: str | None = None) -> JobReport:
    """Run every rule once as of ``now`` and refresh ``device_latest`` (see the module docstring).

    Args:
        sessions: SQL session factory.
        influx: InfluxDB client.
        cfg: thresholds; for a city, :func:`devices.cities.city_settings` (its zone, rounds and
            thresholds).
        city: run for this city's devices only (``cities.id``): its alerts are opened with its id and
            its city-wide alerts are its own (:func:`city_device`); ``None`` runs every device as one
            city (a single-city registry).
        notifiers: called once per alert change, after the commit (best effort).
        now: the run's time (tz-aware); default the current time.
        forecast: recompute the fill forecasts (one more InfluxQL query); otherwise the ones the
            last run stored in ``device_latest.derived`` are used.
        outbox: when given, each alert change gets one row per channel in the run's transaction,
            and the outbox is dispatched after the commit (a failed send stays queued; a database
            error while sending is logged, the run still counts).
        escalation: when given, critical alerts nobody acknowledged in time get a reminder
            (:func:`analytics.escalation.remind`), committed with the run.

    Returns:
        A :class:`JobReport`.

    Raises:
        StoreUnavailable: InfluxDB cannot be reached (nothing is committed).
        DatabaseUnavailable: the SQL database does not answer (PostgreSQL restarting or failing
            over); nothing is committed, the next run does the work.
    """
    try:
        return _run_once(sessions, influx, cfg, notifiers, now, forecast, outbox, escalation, city)
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise


def _run_once(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
              notifiers: list[Notifier] | None, now: datetime | None, forecast: bool,
              outbox: Outbox | None, escalation: Escalation | None, city: str | None) -> JobReport:
    report = JobReport()
    started = time.monotonic()
    now = now or utcnow()
    # InfluxDB answers in its own process: its reads run on these threads while this one does the SQL
    # side (bench/analytics_job.py); the session is used on this thread only
    with sessions() as session, ThreadPoolExecutor(max_workers=2, thread_name_prefix="analytics-read") as reads:
        book = AlertBook(session, notifiers or [], outbox.routing if outbox is not None else ())
        book.city = city
        with report.timed("recent"):
            # the raw read starts first (the window needs only the report intervals); a registry changed
            # between the two selects is read again with the window of the devices loaded
            window = window_of(cfg, active_intervals(session, city))
            raw = [reads.submit(recent_points, influx, m, now, window)
                   for m in (schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR)]
            devices, models, device_rows = load_devices(session, cfg, city)
            if recent_window(cfg, devices) != window:
                window = recent_window(cfg, devices)
                raw = [reads.submit(recent_points, influx, m, now, window)
                       for m in (schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR)]
            active = book.preload(cleared_since=now - max(MAX_RECENT, timedelta(hours=cfg.forecast_window_h),
                                                           timedelta(seconds=cfg.rejects_window_s)))
            latest = {r.device_id: r for r in session.scalars(select(DeviceLatestRow))}
            rejects, rejects_newest = reject_counts(session, now, cfg.rejects_window_s, set(devices))
            last_opened = last_openings(session, now, ONCE_PER_CYCLE)
            city_q = select(DeviceRow.id, DeviceRow.city_id).where(DeviceRow.status == "active")
            if city is not None:
                city_q = city_q.where(DeviceRow.city_id == city)
            city_of = {d: c for d, c in session.execute(city_q)}
            bin_ids = [d for d, dev in devices.items() if dev.kind is DeviceKind.BIN]
            # the forecast's reads of older means need only the pickups: InfluxDB answers them beside the raw
            # read (those a pickup found in the raw points changes are read again, analytics.bins.prefetch_hourly)
            prefetch = reads.submit(bins.prefetch_hourly, influx, now, cfg.forecast_window_h, bin_ids,
                                    pickups.last_at(session, now), now - window) if forecast and bin_ids else None
            recent_bins, recent_air = (f.result() for f in raw)
            if city is not None:  # another city's points are that city's run's
                recent_bins = recent_bins[recent_bins["device_id"].isin(list(devices))].reset_index(drop=True)
                recent_air = recent_air[recent_air["device_id"].isin(list(devices))].reset_index(drop=True)
            recent = pd.concat([f for f in (recent_bins, recent_air) if not f.empty] or [recent_bins],
                               ignore_index=True)
        ctx = Context(now, cfg, devices, city_view(active, devices, city), recent=recent,
                      rejects=rejects, rejects_newest=rejects_newest, last_opened=last_opened)
        ctx.active_details = {k: (dict(r.details or {}), r.updated_at) for k, r in active.items()}
        book.city_of = city_of
        has_bins = any(True for _ in ctx.of_kind(DeviceKind.BIN))
        hist, every = _pickups(ctx, session, influx, recent_bins, report, city_of, city is not None) \
            if has_bins else ({}, {})
        under_way = _start_forecast_reads(ctx, influx, reads, every, recent_bins, window, prefetch) \
            if forecast and has_bins else None
        with report.timed("latest"):  # while InfluxDB computes the forecast's hourly means
            report.latest_rows = refresh_latest(session, influx, now=now, recent=recent, devices=list(devices),
                                                rows=latest)
        ctx.latest_ts = {d: r.ts for d, r in latest.items()}
        derived = _forecast(ctx, hist, latest, under_way, report) if has_bins else {}
        derived.update(_air(ctx, influx, models, report))
        if city is not None:
            derived = {d: v for d, v in derived.items() if d in devices}
        with report.timed("rules"), book.batch():
            for name, rule in RULES.items():  # in order: each rule sees the alerts the earlier ones changed
                verdicts = rule(ctx)
                if name == alerts.BIN_FULL.name:
                    verdicts = full_since(influx, verdicts, ctx)
                apply(book, verdicts, now, report, ctx.latest_ts, city)
                ctx.active = city_view(active, devices, city)
            clear_retired(session, book, active, now, report, city)
        if escalation is not None:
            with report.timed("escalation"):
                report.reminded = remind(session, book, escalation, now)
        with report.timed("commit"):
            write_derived(latest, derived, session)
            session.commit()
        with report.timed("state"):
            try:
                influx.write_lines(state_lines(device_rows, latest, derived, now, cfg.full_threshold))
            except StoreError as exc:  # the alerts are committed; the Grafana state waits for the next run
                log.warning("could not write bin_state/air_index points: %s", exc)
    if outbox is not None:
        with report.timed("notify"):
            try:
                outbox.dispatch()
            except Exception:  # the changes are committed and queued; the next tick sends them
                log.exception("alert notifications not dispatched (they stay queued)")
    book.publish()
    report.span = (started, time.monotonic())
    return report


def clear_retired(session: Session, book: AlertBook, active: dict[tuple[str, str], AlertRow], now: datetime,
                  report: JobReport, city: str | None = None) -> None:
    """Clear the active alerts of retired devices (of ``city`` when given), reason ``device retired``: no
    rule reads a retired device again, so nothing else would ever clear them (``lorong devices retire``
    left a bin's ``bin_full`` on the crew page, and ``lorong cities remove`` refused its city for it)."""
    q = select(DeviceRow.id).where(DeviceRow.status == "retired")
    if city is not None:
        q = q.where(DeviceRow.city_id == city)
    retired = set(session.scalars(q))
    for (device_id, type_), row in list(active.items()):
        if device_id in retired:
            book.clear(row.id, now, SYSTEM, "device retired")
            report.count(report.cleared, type_)


def full_since(influx: InfluxClient, verdicts: list[Verdict], ctx: Context) -> list[Verdict]:
    """``bin_full`` raises whose run of full readings fills the readings the run read (``since_exact``
    false: "at or before" the first of them, :func:`analytics.rules.base.run_start`) get the exact
    ``since`` from the bin's stored readings when InfluxDB holds one below the threshold within
    ``forecast_history_days`` (:func:`analytics.frames.runs_began`: every such bin's statements in a few
    requests): a bin the job first sees full (a restart, a demo that loads history) says since when, not
    the start of the 2-hour look-back.

    Returns:
        The verdicts, those resolved with ``since`` and ``since_exact`` true.

    Raises:
        StoreUnavailable, StoreRejected: from the client (the run fails as for its other reads).
    """
    asks: list[tuple[int, tuple[str, float, datetime]]] = []
    for i, v in enumerate(verdicts):
        d = v.details
        if v.severity is not None and d.get("since_exact") is False and isinstance(d.get("since"), str):
            dev = ctx.devices.get(v.device_id)
            threshold = float(d.get("threshold", dev.full_threshold if dev else ctx.cfg.full_threshold))
            asks.append((i, (v.device_id, threshold, datetime.fromisoformat(d["since"]))))
    if not asks:
        return verdicts
    out = list(verdicts)
    began_at = runs_began(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, [a for _, a in asks],
                          timedelta(days=ctx.cfg.forecast_history_days))
    for (i, _), began in zip(asks, began_at, strict=True):
        if began is not None:
            out[i] = replace(out[i], details={**out[i].details, "since": began.isoformat(), "since_exact": True})
    return out


def merge_reports(reports: Sequence[JobReport]) -> JobReport:
    """One report of several runs (the cities of one tick): counts and timings added up."""
    out = JobReport()
    for r in reports:
        for name in ("opened", "extended", "escalated", "cleared", "held", "timings"):
            total = getattr(out, name)
            for k, v in getattr(r, name).items():
                total[k] = round(total.get(k, 0) + v, 3) if name == "timings" else total.get(k, 0) + v
        out.latest_rows += r.latest_rows
        out.collections += r.collections
        out.forecasts += r.forecasts
        out.reminded.extend(r.reminded)
    if reports:
        out.span = (min(r.span[0] for r in reports), max(r.span[1] for r in reports))
    return out


def run_cities(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
               notifiers: list[Notifier] | None = None, now: datetime | None = None, forecast: bool = True,
               outbox: Outbox | None = None, escalation: Escalation | None = None) -> dict[str | None, JobReport]:
    """:func:`run_once` for every city, each with its own settings
    (:meth:`AnalyticsSettings.for_city`: its time zone, rounds and thresholds), at most
    ``cfg.city_workers`` cities at once (threads: a run mostly waits for InfluxDB).

    A registry with one city runs as before cities existed: one run over every device with ``cfg``
    as given (key ``None``). Reminders of unacknowledged alerts (``escalation``) are sent by the
    last city's run (by id), once per tick. A city whose run fails is logged and skipped; the
    others run. The SQL database not answering ends the tick: cities not started yet are not
    started, the running ones finish (each commits or not on its own; a run is safe to repeat),
    and the next tick redoes them all.

    Returns:
        ``{city id: report}`` in city id order (``{None: report}`` for a single city).

    Raises:
        DatabaseUnavailable: the SQL database did not answer.
        StoreError, the error of the run: every city's run failed.
    """
    now = now or utcnow()
    try:
        with sessions() as session:
            cities = [(c.id, c.timezone, dict(c.analytics or {})) for c in
                      session.scalars(select(CityRow).order_by(CityRow.id))]
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise
    if len(cities) <= 1:
        return {None: run_once(sessions, influx, cfg, notifiers, now, forecast, outbox, escalation)}

    def one(i: int, city: str, tz: str, overrides: dict[str, Any]) -> JobReport:
        return run_once(sessions, influx, cfg.for_city(tz, overrides), notifiers, now, forecast, outbox,
                        escalation if i == len(cities) - 1 else None, city=city)

    reports: dict[str | None, JobReport] = {}
    failure: Exception | None = None
    workers = min(cfg.city_workers, len(cities))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analytics-city") as pool:
        futures = {pool.submit(one, i, *c): c[0] for i, c in enumerate(cities)}
        try:
            for fut in as_completed(futures):
                try:
                    reports[futures[fut]] = fut.result()
                except DatabaseUnavailable:
                    raise
                except StoreUnavailable as exc:  # InfluxDB down: one line, no traceback
                    log.warning("analytics run of city %s failed: %s", futures[fut], exc)
                    failure = exc
                except Exception as exc:  # one city's bad settings or a failed read: the others still run
                    log.error("analytics run of city %s failed", futures[fut], exc_info=exc)
                    failure = exc
        except DatabaseUnavailable:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if not reports and failure is not None:
        raise failure
    return {c[0]: reports[c[0]] for c in cities if c[0] in reports}
