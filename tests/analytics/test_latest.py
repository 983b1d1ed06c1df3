"""``devices.last_seen``: the analytics job moves it to each device's newest reading, never back; and
``device_latest`` holds each run's newest point and results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from devices.registry import get_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import DeviceLatestRow
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


def stored_latest(sessions: Any) -> dict[str, tuple[Any, dict[str, Any], dict[str, Any]]]:
    """``device_latest`` as a new session reads it: ``{device: (ts, metrics, derived)}``."""
    with sessions() as s:
        return {r.device_id: (r.ts, r.metrics, r.derived) for r in s.scalars(select(DeviceLatestRow))}


def test_device_latest_rows_hold_each_runs_newest_point_and_results(sessions: Any, influx: InfluxClient) -> None:
    """The first run adds the rows, a later one updates them (one executemany for the readings, one for
    the results): both reach the database, not only the session's objects."""
    register(sessions, bin_("B1"), station("A1"))
    write(influx, "B1", [(NOW - 40 * MIN, {"fillingLevel": 0.30}), (NOW - 20 * MIN, {"fillingLevel": 0.31})])
    write(influx, "A1", [(NOW - 5 * MIN, {"pm25": 12.0})], schema.MEASUREMENT_AIR)
    write(influx, "B1", [(NOW + 30 * MIN, {"fillingLevel": 0.42, "batteryLevel": 0.9})])
    job = Job(sessions, influx)
    job(NOW, twice=False)
    first = stored_latest(sessions)
    assert first["B1"][:2] == (NOW - 20 * MIN, {"fillingLevel": [0.31, to_ms(NOW - 20 * MIN)]})
    assert first["A1"][:2] == (NOW - 5 * MIN, {"pm25": [12.0, to_ms(NOW - 5 * MIN)]})
    assert first["B1"][2]["forecast_at"] == NOW.isoformat()
    job(NOW + 40 * MIN, twice=False)
    later = stored_latest(sessions)
    at = to_ms(NOW + 30 * MIN)
    assert later["B1"][:2] == (NOW + 30 * MIN, {"fillingLevel": [0.42, at], "batteryLevel": [0.9, at]})
    assert later["B1"][2]["forecast_at"] == (NOW + 40 * MIN).isoformat()
    assert later["A1"][:2] == first["A1"][:2]  # no newer point: the row as it was
