"""``lorong analytics``: run the alert jobs once or on a schedule."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict

import typer

from analytics.jobs import run_once
from analytics.scheduler import Scheduler
from core.settings import Settings
from storage.runtime import open_influx, open_sessions

app = typer.Typer(help="Alerts for full bins, sensor faults and pollution.", no_args_is_help=True)


@app.command("run-once")
def run_once_cmd() -> None:
    """Run every job once and print what changed as JSON."""
    settings = Settings()
    report = run_once(open_sessions(settings), open_influx(settings), settings.analytics)
    print(json.dumps(asdict(report)))


@app.command("schedule")
def schedule() -> None:
    """Run the jobs every `analytics.interval_s` seconds until SIGINT/SIGTERM."""
    settings = Settings()
    sched = Scheduler(open_sessions(settings), open_influx(settings), settings.analytics)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sched.start()
    done.wait()
    sched.stop()
