"""A city's whole evaluation in one call: simulate, load through the ingest pipeline, step the
analytics job through the simulated time, score its decisions against the truth.

This is what ``bench/decisions.py`` runs for the standard city and the held-out ones, and what
the suite runs on the small city (``tests/analytics/test_standard_scenario.py``). Each step is
also a command (``lorong sim scenario``, ``lorong sim load``, ``lorong analytics replay``,
``lorong analytics score``); see firmware_sim/SCENARIO.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from analytics.replay import Progress, replay, write_decisions
from analytics.score import ScoreReport, load, score
from firmware_sim.city import CityConfig
from firmware_sim.load import LoadReport, load_scenario
from firmware_sim.scenario import build_scenario, write_scenario
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One city's evaluation.

    Attributes:
        report: the score.
        load: what loading the messages did.
        folder: where the scenario, ``decisions.json`` and nothing else were written.
        seconds: wall time per phase (``simulate``, ``load``, ``replay``, ``score``).
    """

    report: ScoreReport
    load: LoadReport
    folder: Path
    seconds: dict[str, float]


def evaluate(city: CityConfig, folder: Path, sessions: sessionmaker[Session], influx: InfluxClient,
             cfg: AnalyticsSettings | None = None, step: timedelta = timedelta(minutes=10),
             check_every: int = 1, warmup_h: float = 24.0, progress: Progress | None = None) -> Evaluation:
    """Simulate ``city`` into ``folder``, load it, replay the job from the first to the last
    simulated minute at ``step``, score.

    Args:
        city: the city (its seed, days and sizes as given).
        folder: an empty or new folder.
        sessions: an empty Lorong database (migrated).
        influx: a client on an empty InfluxDB database that exists.
        cfg: the analytics settings under test (defaults when None).
        step: the job's interval.
        check_every: every this many steps the job runs twice at the same time (idempotency).
        warmup_h: hours at the start the score leaves out (the job builds its history).
        progress: passed to :func:`analytics.replay.replay`.

    Returns:
        The :class:`Evaluation`.

    Raises:
        StoreError: InfluxDB failed; OSError: the folder cannot be written.
    """
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    scenario = build_scenario(city)
    write_scenario(scenario, folder)
    seconds["simulate"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    loaded = load_scenario(folder, sessions, influx)
    seconds["load"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    start = datetime.fromisoformat(scenario.truth["start"])
    end = datetime.fromisoformat(scenario.truth["end"])
    decisions = replay(sessions, influx, cfg or AnalyticsSettings(), start, end, step, check_every, progress)
    decisions.scenario = {"city": scenario.truth["city"], "seed": scenario.truth["seed"]}
    write_decisions(decisions, folder / "decisions.json")
    seconds["replay"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    report = score(load(folder / "truth.json"), load(folder / "decisions.json"), warmup_h)
    seconds["score"] = round(time.monotonic() - t0, 1)
    return Evaluation(report, loaded, folder, seconds)
