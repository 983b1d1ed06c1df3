"""The standard city, made small for the suite: simulated (firmware_sim/cities/makassar.yaml with
40 bins, 6 stations, 3 days), loaded through the real ingest pipeline into a real influxd and
SQLite, the job stepped every 10 minutes through the three days (every sixth step run twice), and
its decisions scored against the truth (firmware_sim/SCENARIO.md).

Every target of the issue is asserted, except those the README's "How good are the alerts" lists
as not met yet; for those the test holds the line at the measured figure (a change that makes
them worse fails here), and a known gap that starts passing fails too, so the list stays true.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analytics.score import targets_met
from firmware_sim.city import load_city, packaged_city
from firmware_sim.evaluate import evaluate
from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration

KNOWN_GAPS: dict[str, float] = {
    # target -> the floor this test holds (measured on this city and seed, with a margin). Empty since the
    # fill profiles measure the hours after each pickup (time to full 6-12 h ahead went 1.58 -> 1.47 h on 2026-12-07)
}
"""Unmet targets ("<decision> <measure>") and the value they must not fall below (for time-to-full:
the error they must not exceed)."""


LINE = re.compile(r"^(?P<key>.*?) (?P<value>-|\d+\.\d+)(?: h)? [<>] ")


def _split(line: str) -> tuple[str, float]:
    """``"bin_full precision 0.920 < 0.98"`` -> ``("bin_full precision", 0.92)``; ``"time to full 3-6 h
    median error 1.88 h > 1.5 h"`` -> ``("time to full 3-6 h median error", 1.88)``."""
    m = LINE.match(line)
    assert m is not None, line
    return m["key"], float("nan") if m["value"] == "-" else float(m["value"])


def test_standard_city_meets_the_targets(tmp_path: Path, sessions: Any, influx: InfluxClient) -> None:
    city = load_city(packaged_city("makassar")).model_copy(update={"bins": 40, "stations": 6, "days": 3})
    ev = evaluate(city, tmp_path / "city", sessions, influx, check_every=6)
    report = ev.report
    assert ev.load.messages > 20_000 and sum(ev.load.rejects.values()) >= 1
    assert report.idempotency_checked >= 70 and report.idempotency_changed == 0
    unmet = {_split(line)[0]: line for line in targets_met(report)}
    surprises = sorted(set(unmet) - set(KNOWN_GAPS))
    assert not surprises, [unmet[k] for k in surprises]
    fixed = sorted(set(KNOWN_GAPS) - set(unmet))
    assert not fixed, f"now met, take them off KNOWN_GAPS and the README: {fixed}"
    for key, floor in KNOWN_GAPS.items():
        value = _split(unmet[key])[1]
        if "time to full" in key:
            assert value <= floor, unmet[key]
        else:
            assert value >= floor, unmet[key]
