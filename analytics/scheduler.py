"""Runs the analytics job in one background thread until stopped.

Every ``interval_s`` (30 s) a run raises and clears alerts, per city in its own time zone, cities side
by side (:func:`analytics.jobs.run_cities`; one run when the registry holds one city); every ``forecast_interval_s``
(10 min) the run also recomputes the fill forecasts (one more InfluxQL query over a day of
data); runs in between reuse the forecasts stored in ``device_latest.derived``. A failing run
is logged and retried at the next tick; a run is safe to repeat, so nothing is lost. InfluxDB or
the SQL database not answering (a restart, a PostgreSQL failover) is one warning line per run.

Every tick also dispatches the notification outbox (:mod:`analytics.outbox`; the run does it
after its commit, a failed run here), so notifications held back by a broker or webhook outage go
out once it is back; once an hour, delivered notifications past their retention are deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import Notifier
from analytics.escalation import Escalation
from analytics.jobs import JobReport, merge_reports, run_cities
from analytics.outbox import Outbox
from lorong.core.errors import DatabaseUnavailable, StoreError
from lorong.core.model import utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
"""Seconds between two deletions of delivered notifications past their retention."""


class Scheduler:
    """Background job loop.

    Args:
        sessions: SQL session factory.
        influx: InfluxDB client.
        cfg: thresholds and intervals.
        notifiers: alert-change notifiers (MQTT, webhook, ...).
        clock: the time each run is "as of" (tests pass a fake clock).
        outbox: notification outbox written by each run and dispatched every tick.
        escalation: reminders of critical alerts nobody acknowledged, checked every run.
    """

    def __init__(self, sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
                 notifiers: list[Notifier] | None = None, clock: Callable[[], datetime] = utcnow,
                 outbox: Outbox | None = None, escalation: Escalation | None = None) -> None:
        self.sessions, self.influx, self.cfg = sessions, influx, cfg
        self.escalation = escalation
        self.notifiers = notifiers or []
        self.outbox = outbox
        self._last_purge: float | None = None
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analytics", daemon=True)
        self._last_forecast: float | None = None
        self.runs = 0
        self.last_report: JobReport | None = None

    def start(self) -> None:
        """Start the loop (first run at once, with forecasts)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current run."""
        self._stop.set()
        self._thread.join(timeout=60)

    def tick(self) -> JobReport:
        """One run now; forecasts when ``forecast_interval_s`` has passed since the last ones. The
        outbox is dispatched even when the run fails, and purged once every :data:`PURGE_EVERY_S`.

        Raises:
            StoreError: InfluxDB failed (nothing committed).
            DatabaseUnavailable: the SQL database did not answer (nothing committed).
        """
        mono = time.monotonic()
        forecast = self._last_forecast is None or mono - self._last_forecast >= self.cfg.forecast_interval_s
        try:
            reports = run_cities(self.sessions, self.influx, self.cfg, self.notifiers, now=self.clock(),
                                 forecast=forecast, outbox=self.outbox, escalation=self.escalation)
            report = reports[None] if None in reports else merge_reports(list(reports.values()))
        except Exception:
            self._outbox_upkeep(mono, dispatch=True)
            raise
        self._outbox_upkeep(mono, dispatch=False)
        if forecast:
            self._last_forecast = mono
        self.runs += 1
        self.last_report = report
        return report

    def _outbox_upkeep(self, mono: float, dispatch: bool) -> None:
        if self.outbox is None:
            return
        try:
            if dispatch:
                self.outbox.dispatch()
            if self._last_purge is None or mono - self._last_purge >= PURGE_EVERY_S:
                self._last_purge = mono
                if n := self.outbox.purge():
                    log.info("deleted %d delivered notifications older than %s", n, self.outbox.retention)
        except Exception:  # a database hiccup: the rows stay, the next tick tries again
            log.exception("notification outbox upkeep failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.tick()
                if report.opened or report.cleared or report.escalated:
                    log.info("analytics: opened %s escalated %s cleared %s", report.opened, report.escalated,
                             report.cleared)
            except (StoreError, DatabaseUnavailable) as exc:
                log.warning("analytics run skipped: %s", exc)
            except Exception:
                log.exception("analytics run failed")
            self._stop.wait(self.cfg.interval_s)
