"""Replay: the analytics job stepped through past time in one process, its decisions written as JSON.

``lorong sim load`` puts a scenario's messages into InfluxDB and the registry; :func:`replay` then
runs the scheduler's tick (:func:`analytics.jobs.run_cities`: each city of the registry with its own
zone, rounds and thresholds; the scenario's city is registered by the load) as of ``start``,
``start + step``, ... ``end`` (both ends
included; notifications off, forecasts on) on that data, as the scheduler would have run it live
(every InfluxQL window ends at ``now``, so later points stay invisible). After each step it records
each bin's forecast; every ``check_every``-th step it runs the same ``now`` again and records
whether the repeat changed anything (the job must be idempotent). At the end it reads the alerts
and pickups the job stored. :func:`analytics.score.score` compares the result with the truth.

The job's SQL output (alerts, pickups, ``device_latest``) must start empty at ``start``: rows a
previous replay left behind change what the rules see (an offline check against a reading from
the future, an alert that is "already active"). :func:`leftovers` counts them and
:func:`reset` deletes them.

Decisions JSON (version 1)::

    {"version": 1, "from": iso, "to": iso, "step_s": 600, "steps": 721, "seconds": 95.2,
     "alerts": [{"id", "device_id", "type", "severity", "peak_severity", "opened_at",
                 "cleared_at" | null, "clear_reason" | null, "details"}],
     "pickups": [{"device_id", "at", "level_before", "level_after"}],
     "forecasts": [{"device_id", "now", "full_at" | null, "level", "expected_pickup" | null}],
     "idempotency": {"checked": 721, "changed": [{"now": iso, "what": "opened bin_full_soon x1"}]},
     "scenario": {"city", "seed"}}   # with --truth only: the scenario replayed

``severity`` is the alert's severity when it opened, ``peak_severity`` the most severe it reached
(escalations); ``details`` are those it opened with; ``clear_reason`` is the job's reason
(``emptied at ...``) or null when a person cleared it without one.

``forecasts`` holds one entry per step and bin whose level is below its full threshold (bins at
or above it have nothing left to forecast): with ``full_at`` null when the job had no crossing
time for it, which the scorer counts as a miss when the truth crossed within a day.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import JobReport, merge_reports, run_cities
from lorong.core import schema
from lorong.core.errors import LorongError
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import (
    AlertHistoryRow,
    AlertRow,
    CollectionRow,
    DeviceLatestRow,
    DeviceRow,
    NotificationOutboxRow,
)

log = logging.getLogger(__name__)

VERSION = 1
"""Version of the decisions JSON."""

Progress = Callable[[datetime, int, int, dict[str, int]], None]
"""``progress(now, steps_done, steps_total, opened_by_type)``, called once per simulated day and
after the last step."""


class ReplayError(LorongError):
    """The replay cannot start: a bad range or step, or the database holds a previous run's output."""


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat() if ts is not None else None


@dataclass
class Decisions:
    """What the job decided over a replay.

    Attributes:
        start, end: the replayed range (tz-aware UTC), both steps included.
        step: time between two steps.
        steps: runs made, not counting the idempotency repeats.
        seconds: wall-clock time of the whole replay.
        alerts: one dict per opening (see the module docstring), ordered by opening time.
        pickups: one dict per stored pickup, ordered by time.
        forecasts: compact ``(device_id, now_s, full_at_s | None, level, expected_pickup_s | None)``
            tuples, times in epoch seconds (a tuple costs a fraction of a dict per step and bin).
        checked: steps run twice.
        changed: ``(now, what)`` of each repeat that changed something.
        scenario: ``{"city", "seed"}`` of the truth the replay was run for (``--truth``), else None;
            :func:`analytics.score.score` refuses another scenario's truth by it.
    """

    start: datetime
    end: datetime
    step: timedelta
    steps: int = 0
    seconds: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    pickups: list[dict[str, Any]] = field(default_factory=list)
    forecasts: list[tuple[str, int, int | None, float, int | None]] = field(default_factory=list)
    checked: int = 0
    changed: list[tuple[datetime, str]] = field(default_factory=list)
    scenario: dict[str, Any] | None = None

    def opened_by_type(self) -> dict[str, int]:
        """Alerts opened per type, sorted by type."""
        out: dict[str, int] = defaultdict(int)
        for a in self.alerts:
            out[a["type"]] += 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        """The decisions JSON document (see the module docstring)."""
        def s(ts: int | None) -> str | None:
            return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None

        return {
            "version": VERSION, "from": _iso(self.start), "to": _iso(self.end),
            "step_s": self.step.total_seconds(), "steps": self.steps, "seconds": round(self.seconds, 1),
            "alerts": self.alerts, "pickups": self.pickups,
            "forecasts": [{"device_id": d, "now": s(n), "full_at": s(f), "level": lv, "expected_pickup": s(p)}
                          for d, n, f, lv, p in self.forecasts],
            "idempotency": {"checked": self.checked,
                            "changed": [{"now": _iso(n), "what": w} for n, w in self.changed]},
            **({"scenario": self.scenario} if self.scenario is not None else {}),
        }


def write_decisions(decisions: Decisions, path: Path) -> None:
    """Write :meth:`Decisions.to_json` to ``path`` as compact UTF-8 JSON (one line).

    Raises:
        OSError: the file cannot be written.
    """
    path.write_text(json.dumps(decisions.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")


def leftovers(sessions: sessionmaker[Session], start: datetime) -> dict[str, int]:
    """Rows of the job's output that a replay from ``start`` would trip over: alerts and pickups at
    or after ``start``, ``device_latest`` rows newer than it.

    Returns:
        ``{"alerts": n, "collections": n, "device_latest": n}``, zeros left out.
    """
    with sessions() as s:
        counts = {
            "alerts": s.scalar(select(func.count()).select_from(AlertRow).where(
                or_(AlertRow.started_at >= start, AlertRow.status == "active"))) or 0,
            "collections": s.scalar(select(func.count()).select_from(CollectionRow).where(
                CollectionRow.at >= start)) or 0,
            "device_latest": s.scalar(select(func.count()).select_from(DeviceLatestRow).where(
                DeviceLatestRow.ts > start)) or 0,
        }
    return {k: v for k, v in counts.items() if v}


def people_rows(sessions: sessionmaker[Session]) -> int:
    """Rows people made: alert history by anyone but the job (acks, clears, a crew's reports) and
    pickups a person reported. A database that holds any is a live one, not a replay's."""
    with sessions() as s:
        acts = s.scalar(select(func.count()).select_from(AlertHistoryRow).where(AlertHistoryRow.actor != "system"))
        emptied = s.scalar(select(func.count()).select_from(CollectionRow).where(CollectionRow.source != "sensor"))
    return int(acts or 0) + int(emptied or 0)


def reset(sessions: sessionmaker[Session]) -> None:
    """Delete the job's SQL output: alerts, their history and outbox rows, pickups, ``device_latest``.

    The registry, dead letters and InfluxDB are kept (the job never reads back what it writes to
    InfluxDB).

    Raises:
        ReplayError: the database holds rows people made (:func:`people_rows`): it is a live
            database, and a replay's reset would delete a city's alerts, their history and the
            crews' reports.
    """
    people = people_rows(sessions)
    if people:
        raise ReplayError(f"the database holds {people} row(s) people made (acks, clears, emptied bins): it is a "
                          "live database and --reset would delete them; replay into a database of its own "
                          "(LORONG_DATABASE_URL=sqlite:///var/replay.db)")
    with sessions.begin() as s:
        for table in (NotificationOutboxRow, AlertHistoryRow, AlertRow, CollectionRow, DeviceLatestRow):
            s.execute(delete(table))


def _alert_states(session: Session, now: datetime) -> dict[int, tuple[str, str, str]]:
    """``{id: (type, status, severity)}`` of the active alerts and of those cleared at or after ``now``."""
    q = select(AlertRow.id, AlertRow.type, AlertRow.status, AlertRow.severity).where(
        or_(AlertRow.status == "active", AlertRow.cleared_at >= now))
    return {i: (t, st, sev) for i, t, st, sev in session.execute(q)}


def _what_changed(report: JobReport, before: dict[int, tuple[str, str, str]],
                  after: dict[int, tuple[str, str, str]]) -> str:
    """One line naming what a repeated run changed, ``""`` when nothing."""
    parts = [f"{action} {t} x{n}" for action, bucket in (("opened", report.opened), ("cleared", report.cleared),
                                                           ("escalated", report.escalated))
             for t, n in sorted(bucket.items())]
    if report.collections:
        parts.append(f"pickups x{report.collections}")
    for i, a in sorted(after.items()):
        b = before.get(i)
        if b is None and not report.opened:  # opened without being counted
            parts.append(f"alert {i} {a[0]} appeared")
        elif b is not None and b[1:] != a[1:] and not report.cleared and not report.escalated:
            parts.append(f"alert {i} {a[0]} {b[1]}/{b[2]} -> {a[1]}/{a[2]}")
    return ", ".join(parts)


def _record_forecasts(session: Session, cfg: AnalyticsSettings, now: datetime, out: Decisions) -> None:
    """Append the forecast of every bin below its threshold to ``out.forecasts``."""
    q = (select(DeviceLatestRow.device_id, DeviceLatestRow.metrics, DeviceLatestRow.derived, DeviceRow.full_threshold)
         .join(DeviceRow, DeviceRow.id == DeviceLatestRow.device_id)
         .where(DeviceRow.kind == "bin", DeviceRow.status == "active"))
    now_s = int(now.timestamp())

    def epoch(value: Any) -> int | None:
        return int(datetime.fromisoformat(value).timestamp()) if isinstance(value, str) else None

    for device_id, metrics, derived, threshold in session.execute(q):
        fill = (metrics or {}).get(schema.FIELD_FILL)
        if not fill or not isinstance(fill[0], int | float):
            continue
        level = float(fill[0])
        if level >= (threshold or cfg.full_threshold):
            continue
        d = derived or {}
        pickup = d.get("expected_pickup")
        out.forecasts.append((device_id, now_s, epoch(d.get("full_at")), round(level, 4), epoch(pickup)))


def _collect(session: Session, start: datetime, end: datetime, out: Decisions) -> None:
    """Fill ``out.alerts`` and ``out.pickups`` from what the job stored within ``[start, end]``.

    A cleared alert that is raised again gets a new row (:meth:`AlertBook.raise_` only extends an
    *active* one), so each row is one opening; the opening is still read from the row's ``opened``
    history entry (with the details at that time) and paired with the ``cleared`` entry after it,
    so that a row reused for a second opening would give two entries.
    """
    rows = session.scalars(select(AlertRow).where(AlertRow.started_at >= start, AlertRow.started_at <= end)
                           .order_by(AlertRow.started_at, AlertRow.id)).all()
    history: dict[int, list[AlertHistoryRow]] = defaultdict(list)
    if rows:
        for h in session.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id.in_([r.id for r in rows]))
                                 .order_by(AlertHistoryRow.at, AlertHistoryRow.id)):
            history[h.alert_id].append(h)
    for row in rows:
        openings: list[dict[str, Any]] = []
        severity = row.severity
        for h in history.get(row.id, []):
            if h.action == "opened":
                openings.append({"id": row.id, "device_id": row.device_id, "type": row.type, "severity": None,
                                 "peak_severity": None, "opened_at": _iso(h.at), "cleared_at": None,
                                 "clear_reason": None, "details": h.details or row.details, "_sev": []})
            elif h.action in ("escalated", "deescalated") and openings:
                openings[-1]["_sev"].extend([h.details.get("from"), h.details.get("to")])
            elif h.action == "cleared" and openings:
                openings[-1]["cleared_at"] = _iso(h.at)
                openings[-1]["clear_reason"] = (h.details or {}).get("reason")
        if not openings:  # no history (rows written by hand): the row itself
            openings.append({"id": row.id, "device_id": row.device_id, "type": row.type, "severity": None,
                             "peak_severity": None, "opened_at": _iso(row.started_at), "cleared_at":
                             _iso(row.cleared_at), "clear_reason": None, "details": row.details, "_sev": []})
        for o in openings:
            sev = [x for x in o.pop("_sev") if isinstance(x, str)] or [severity]
            o["severity"] = sev[0]
            o["peak_severity"] = min(sev, key=_rank)
            out.alerts.append(o)
    out.alerts.sort(key=lambda a: (a["opened_at"], a["id"]))
    out.pickups = [{"device_id": c.device_id, "at": _iso(c.at), "level_before": c.level_before,
                    "level_after": c.level_after}
                   for c in session.scalars(select(CollectionRow).where(CollectionRow.at >= start,
                                                                        CollectionRow.at <= end)
                                            .order_by(CollectionRow.at, CollectionRow.device_id))]


def _rank(severity: str) -> int:
    order = ("critical", "major", "minor", "warning")
    return order.index(severity) if severity in order else len(order)


def _tick(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings, now: datetime) -> JobReport:
    """One tick of the scheduler as of ``now``, notifications off: every city with its own settings
    (:func:`analytics.jobs.run_cities`), one report."""
    reports = run_cities(sessions, influx, cfg, notifiers=[], now=now, forecast=True, outbox=None)
    return reports[None] if None in reports else merge_reports(list(reports.values()))


def replay(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings, start: datetime,
           end: datetime, step: timedelta, check_every: int = 1, progress: Progress | None = None) -> Decisions:
    """Run the job as of every step of ``[start, end]`` and collect its decisions.

    Args:
        sessions: SQL session factory; the job's tables should hold nothing at or after ``start``
            (see :func:`leftovers`; not checked here).
        influx: InfluxDB client holding the scenario's points.
        cfg: the deployment's analytics settings (each city's run takes its own zone and overrides).
        start, end: tz-aware times; ``end >= start``. Steps are ``start + k * step <= end``.
        step: time between runs, > 0 (the scheduler's interval; 10 minutes in the scenarios).
        check_every: run every this many steps (the first included) a second time as of the same
            ``now`` and record what the repeat changed, >= 1; 0 checks none.
        progress: see :data:`Progress`.

    Returns:
        The :class:`Decisions`.

    Raises:
        ReplayError: naive times, ``end < start``, ``step <= 0`` or ``check_every < 0``.
        StoreUnavailable: InfluxDB went away (what ran so far is committed).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ReplayError("replay times need an offset")
    if end < start:
        raise ReplayError(f"--to {_iso(end)} is before --from {_iso(start)}")
    if step <= timedelta(0):
        raise ReplayError("the step must be positive")
    if check_every < 0:
        raise ReplayError("check_every must be >= 0")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    out = Decisions(start, end, step)
    total = int((end - start) / step) + 1
    opened: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    next_day = start + timedelta(days=1)
    for k in range(total):
        now = start + k * step
        report = _tick(sessions, influx, cfg, now)
        for t, n in report.opened.items():
            opened[t] += n
        out.steps += 1
        if check_every and k % check_every == 0:
            with sessions() as s:
                before = _alert_states(s, now)
            again = _tick(sessions, influx, cfg, now)
            with sessions() as s:
                after = _alert_states(s, now)
            out.checked += 1
            what = _what_changed(again, before, after)
            if what:
                log.warning("repeated run at %s changed: %s", _iso(now), what)
                out.changed.append((now, what))
        with sessions() as s:
            _record_forecasts(s, cfg, now, out)
        if progress is not None and (now >= next_day or k == total - 1):
            progress(now, k + 1, total, dict(sorted(opened.items())))
            while next_day <= now:
                next_day += timedelta(days=1)
    with sessions() as s:
        _collect(s, start, end, out)
    out.seconds = time.perf_counter() - t0
    return out
