"""A clear by a person sticks until evidence newer than the clear arrives (SQLite and PostgreSQL, real InfluxDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from analytics.alerts import AlertBook
from lorong.core import schema
from lorong.storage.influx import InfluxClient
from lorong.storage.tables import AlertRow, DeadLetterRow
from tests.analytics.test_scenarios import Job, bin_, register, station, write
from tests.devices.conftest import backend, db_url, empty_db_url, postgres_server  # noqa: F401  (both back ends)

MIN = timedelta(minutes=1)
T = datetime(2026, 11, 29, 21, 51, 3, tzinfo=UTC)
"""The newest reading of the user's report."""


def hand_clear(sessions: Any, device_id: str, type_: str, at: datetime, actor: str = "truk-07") -> int:
    """Clear the active alert as a crew token does through the API; returns its id."""
    with sessions.begin() as s:
        book = AlertBook(s)
        row = book.active(device_id, type_)
        assert row is not None
        book.clear(row.id, at, actor, "emptied by hand")
        return row.id


def alerts(sessions: Any, device_id: str, type_: str) -> list[tuple[str, str]]:
    """(status, details.since or "") of every alert of that device and type, oldest first."""
    with sessions() as s:
        rows = s.scalars(select(AlertRow).where(AlertRow.device_id == device_id, AlertRow.type == type_)
                         .order_by(AlertRow.id)).all()
        return [(r.status, str(r.details.get("since", ""))) for r in rows]


def test_bin_full_stays_cleared_until_a_newer_reading(sessions: Any, influx: InfluxClient) -> None:
    register(sessions, bin_("B31", report_interval_s=3600))
    write(influx, "B31", [(T - 10 * MIN, {"fillingLevel": 0.91}), (T, {"fillingLevel": 0.93})])
    job = Job(sessions, influx)
    assert job(T + MIN).opened == {"bin_full": 1}

    hand_clear(sessions, "B31", "bin_full", datetime(2026, 11, 29, 22, 1, 42, tzinfo=UTC))
    r = job(datetime(2026, 11, 29, 22, 1, 50, tzinfo=UTC))
    assert r.opened == {} and r.held == {"bin_full": 1}
    assert alerts(sessions, "B31", "bin_full") == [("cleared", "2026-11-29T21:41:03+00:00")]

    # the same old readings, runs later: still held; other types of the device are not affected
    assert job(T + 30 * MIN).held == {"bin_full": 1}

    # a reading after the clear: the bin really is full, the alert opens again
    write(influx, "B31", [(T + 40 * MIN, {"fillingLevel": 0.94})])
    r = job(T + 41 * MIN)
    assert r.opened == {"bin_full": 1} and r.held == {}
    assert [a[0] for a in alerts(sessions, "B31", "bin_full")] == ["cleared", "active"]


def test_system_clear_does_not_hold(sessions: Any, influx: InfluxClient) -> None:
    register(sessions, bin_("B1", report_interval_s=3600))
    write(influx, "B1", [(T - 10 * MIN, {"fillingLevel": 0.91}), (T, {"fillingLevel": 0.93})])
    job = Job(sessions, influx)
    assert job(T + MIN).opened == {"bin_full": 1}
    hand_clear(sessions, "B1", "bin_full", T + 2 * MIN, actor="system")
    r = job(T + 3 * MIN)
    assert r.opened == {"bin_full": 1} and r.held == {}


def test_offline_holds_for_one_limit_after_the_clear(sessions: Any, influx: InfluxClient) -> None:
    register(sessions, bin_("SILENT"))  # 600 s interval: offline after 30 min
    write(influx, "SILENT", [(T, {"fillingLevel": 0.2})])
    job = Job(sessions, influx)
    assert job(T + 31 * MIN).opened == {"offline": 1}
    cleared = T + 40 * MIN
    hand_clear(sessions, "SILENT", "offline", cleared)
    assert job(cleared + MIN).held == {"offline": 1}
    assert job(cleared + 29 * MIN).held == {"offline": 1}
    assert job(cleared + 31 * MIN).opened == {"offline": 1}


def test_sensor_fault_and_pollution_spike_held(sessions: Any, influx: InfluxClient) -> None:
    hourly = {"report_interval_s": 3600}
    register(sessions, bin_("STUCK", **hourly), bin_("NOISY", **hourly), station("AIR", **hourly))
    write(influx, "STUCK", [(T - k * 10 * MIN, {"distance": 420.0, "fillingLevel": 0.5}) for k in range(12)])
    write(influx, "NOISY", [(T, {"fillingLevel": 0.3})])
    write(influx, "AIR", [(T, {"pm25": 200.0})], schema.MEASUREMENT_AIR)
    with sessions.begin() as s:
        s.add_all([DeadLetterRow(received_at=T - k * MIN, topic="lorong/v1/NOISY/up", payload=b"{",
                                 reason="bad_json", device_id="NOISY") for k in range(5)])
    job = Job(sessions, influx)
    r = job(T + MIN)
    assert r.opened == {"stuck": 1, "payload_rejects": 1, "pm25_high": 1}

    cleared = T + 2 * MIN
    for device_id, type_ in (("STUCK", "stuck"), ("NOISY", "payload_rejects"), ("AIR", "pm25_high")):
        hand_clear(sessions, device_id, type_, cleared)
    r = job(T + 3 * MIN)
    assert r.opened == {} and r.held == {"stuck": 1, "payload_rejects": 1, "pm25_high": 1}

    # new evidence for two of them: a stuck reading, a new dead letter; the station stays quiet
    write(influx, "STUCK", [(T + 4 * MIN, {"distance": 420.0, "fillingLevel": 0.5})])
    with sessions.begin() as s:
        s.add(DeadLetterRow(received_at=T + 4 * MIN, topic="lorong/v1/NOISY/up", payload=b"{", reason="bad_json",
                            device_id="NOISY"))
    r = job(T + 5 * MIN)
    assert r.opened == {"stuck": 1, "payload_rejects": 1} and r.held == {"pm25_high": 1}
