"""Runs the analytics jobs every ``interval_s`` seconds in one thread until stopped."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import Notifier
from analytics.jobs import run_once
from core.errors import StoreError
from core.settings import AnalyticsSettings
from storage.influx import InfluxClient

log = logging.getLogger(__name__)


class Scheduler:
    """Background job loop; a failing run is logged and retried at the next tick."""

    def __init__(self, sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
                 notifiers: list[Notifier] | None = None) -> None:
        self.sessions, self.influx, self.cfg = sessions, influx, cfg
        self.notifiers = notifiers or []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analytics", daemon=True)
        self.runs = 0

    def start(self) -> None:
        """Start the loop (first run at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current run."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = run_once(self.sessions, self.influx, self.cfg, self.notifiers)
                self.runs += 1
                if report.opened or report.cleared:
                    log.info("analytics: opened %s cleared %s", report.opened, report.cleared)
            except StoreError as exc:
                log.warning("analytics run skipped: %s", exc)
            except Exception:
                log.exception("analytics run failed")
            self._stop.wait(self.cfg.interval_s)
