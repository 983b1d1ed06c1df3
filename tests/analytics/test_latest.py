"""``devices.last_seen``: the analytics job moves it to each device's newest reading, never back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from devices.registry import get_device
from lorong.core import schema
from lorong.storage.influx import InfluxClient
from tests.analytics.test_scenarios import MIN, NOW, Job, bin_, register, station, write

pytestmark = pytest.mark.integration


def last_seen(sessions: Any) -> dict[str, Any]:
    with sessions() as s:
        return {d: get_device(s, d).last_seen for d in ("B1", "A1", "NEVER")}


def test_job_moves_last_seen_forward_only(sessions: Any, influx: InfluxClient) -> None:
    register(sessions, bin_("B1"), station("A1"), bin_("NEVER"))
    write(influx, "B1", [(NOW - 40 * MIN, {"fillingLevel": 0.30}), (NOW - 20 * MIN, {"fillingLevel": 0.31})])
    write(influx, "A1", [(NOW - 5 * MIN, {"pm25": 12.0})], schema.MEASUREMENT_AIR)
    write(influx, "B1", [(NOW + 30 * MIN, {"fillingLevel": 0.32})])  # after the run's time: not seen yet
    job = Job(sessions, influx)
    job(NOW)
    assert last_seen(sessions) == {"B1": NOW - 20 * MIN, "A1": NOW - 5 * MIN, "NEVER": None}
    job(NOW - timedelta(hours=1), twice=False)  # a re-run of an earlier time does not move it back
    assert last_seen(sessions) == {"B1": NOW - 20 * MIN, "A1": NOW - 5 * MIN, "NEVER": None}
    job(NOW + 40 * MIN, twice=False)
    assert last_seen(sessions)["B1"] == NOW + 30 * MIN
