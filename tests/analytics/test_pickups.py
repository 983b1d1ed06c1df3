"""Pickup detection: confirmed falls, glitches ignored, backfill from InfluxDB, the CLI commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics.cli import app
from analytics.pickups import Pickup, backfill, detect, detect_in_influx, history, last_at
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import CollectionRow

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)

SERIES = {
    "REAL": [0.7, 0.8, 0.85, 0.04, 0.05, 0.07],    # emptied at k=3
    "DIP": [0.5, 0.5, 0.02, 0.51, 0.52, 0.52],     # one lost echo
    "SPIKE": [0.3, 0.3, 0.95, 0.31, 0.31, 0.32],   # a bag held over the sensor
    "PENDING": [0.6, 0.7, 0.8, 0.9, 0.9, 0.1],     # newest reading low: wait for the next one
    "PARTIAL": [0.9, 0.9, 0.55, 0.56, 0.57, 0.58],  # a fall of 0.35: counted
}


def t(k: int) -> datetime:
    """Time of reading k (the last one is at NOW - 10 min)."""
    return NOW - (6 - k) * STEP


def long_frame() -> pd.DataFrame:
    """SERIES as the job's long frame."""
    rows = [{"device_id": d, "time": pd.Timestamp(t(k)), "fillingLevel": v}
            for d, vals in sorted(SERIES.items()) for k, v in enumerate(vals)]
    return pd.DataFrame(rows)


EXPECTED = [Pickup("PARTIAL", t(2), 0.9, 0.55), Pickup("REAL", t(3), 0.85, 0.04)]


def test_detect_in_frame() -> None:
    assert detect(long_frame(), 0.3) == EXPECTED
    assert detect(long_frame(), 0.4) == [EXPECTED[1]]
    assert detect(pd.DataFrame(), 0.3) == []


def write_series(influx: InfluxClient) -> None:
    """SERIES into InfluxDB."""
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: d, schema.TAG_KECAMATAN: "Tallo"},
                             {"fillingLevel": v}, to_ms(t(k)))
                        for d, vals in SERIES.items() for k, v in enumerate(vals)])


def test_backfill_from_influx_and_cli(sessions: Any, influx: InfluxClient, db_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(influx)
    found = detect_in_influx(influx, NOW - timedelta(hours=2), NOW, 0.3)
    # a backfill cannot wait for the reading after the newest one: PENDING's fall is taken
    assert sorted(found, key=lambda p: p.device_id) == [
        Pickup("PARTIAL", t(2), 0.9, 0.55), Pickup("PENDING", t(5), 0.9, 0.1), Pickup("REAL", t(3), 0.85, 0.04)]
    with sessions.begin() as s:
        for d in SERIES:
            add_device(s, DeviceIn(id=d, kind="bin", kecamatan="Tallo", depth_mm=1000))
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    monkeypatch.setenv("LORONG_INFLUX__URL", influx.url)
    monkeypatch.setenv("LORONG_INFLUX__DATABASE", influx.database)
    with sessions.begin() as s:  # a person's "Emptied" on the crew page
        s.add(CollectionRow(device_id="DIP", at=t(4), level_before=0.51, level_after=None, source="crew",
                            actor="crew:ANDI"))
    runner = CliRunner()
    args = ["collections", "--hours", "2", "--now", NOW.isoformat()]
    # issue 14 item 29: it printed only the counts, where the README says it lists the pickups
    listing = [  # WITA (analytics.timezone), oldest first
        "2026-03-02T09:20+08:00  PARTIAL  Tallo  0.90 -> 0.55  sensor",
        "2026-03-02T09:30+08:00  REAL     Tallo  0.85 -> 0.04  sensor",
        "2026-03-02T09:40+08:00  DIP      Tallo  0.51 -> ?     crew:ANDI",
        "2026-03-02T09:50+08:00  PENDING  Tallo  0.90 -> 0.10  sensor",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [*[x + ("  new" if "sensor" in x else "") for x in listing],
                                         "4 pickups in the 2 h to 2026-03-02T10:00+08:00 (3 by sensor, 1 by crew); "
                                         "backfill: 3 found in InfluxDB, 3 new"]
    assert runner.invoke(app, args).output.splitlines() == [
        *listing, "4 pickups in the 2 h to 2026-03-02T10:00+08:00 (3 by sensor, 1 by crew); "
                  "backfill: 3 found in InfluxDB, 0 new"]
    with sessions() as s:
        assert len(s.scalars(select(CollectionRow)).all()) == 4
        # each bin's newest pickup, what a run knows before its raw read: the history's last
        assert last_at(s, NOW) == {d: h.at[-1] for d, h in history(s, NOW).items()} == {
            "PARTIAL": t(2), "REAL": t(3), "DIP": t(4), "PENDING": t(5)}
        assert last_at(s, t(4)) == {"PARTIAL": t(2), "REAL": t(3), "DIP": t(4)}
    points = influx.records(f'SELECT * FROM "{schema.MEASUREMENT_COLLECTION}"')
    assert sorted((p["device_id"], p["kecamatan"], p["before"], p["after"]) for p in points) == [
        ("PARTIAL", "Tallo", 0.9, 0.55), ("PENDING", "Tallo", 0.9, 0.1), ("REAL", "Tallo", 0.85, 0.04)]

    result = runner.invoke(app, ["run-once", "--now", NOW.isoformat(), "--no-notify"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # the job sees REAL and PARTIAL again in its recent window: stored already; PENDING unconfirmed
    assert (report["opened"], report["collections"], report["latest_rows"]) == ({}, 0, 5)
    bad = runner.invoke(app, ["run-once", "--now", "2026-03-02T10:00"])
    assert bad.exit_code != 0 and "offset" in bad.output


def test_a_crew_report_and_the_sensors_fall_are_one_pickup(sessions: Any, influx: InfluxClient) -> None:
    """A crew's "Emptied" and the fall the sensor shows minutes later are one emptying: the sensor
    confirms the report (its level after) instead of a second row, again on every later run. Two
    rows a few minutes apart also gave the bin's fill statistics an interval of minutes."""
    from analytics.pickups import record

    with sessions.begin() as s:
        add_device(s, DeviceIn(id="REAL", kind="bin", depth_mm=1000))
        s.add(CollectionRow(device_id="REAL", at=t(3) - timedelta(minutes=4), level_before=0.85, level_after=None,
                            source="crew", actor="crew:budi"))
    sensor = Pickup("REAL", t(3), 0.85, 0.04)
    for _ in range(2):  # the job's next run finds the same fall
        with sessions.begin() as s:
            new = record(s, influx, [sensor], {"REAL": "Wajo"})
        with sessions() as s:
            rows = s.scalars(select(CollectionRow).where(CollectionRow.device_id == "REAL")).all()
            assert [(r.source, r.actor, r.level_before, r.level_after) for r in rows] == [
                ("crew", "crew:budi", 0.85, 0.04)]
    assert new == []
    # a fall two hours after the report is another emptying
    with sessions.begin() as s:
        later = record(s, influx, [Pickup("REAL", t(3) + timedelta(hours=2), 0.5, 0.03)], {"REAL": "Wajo"})
    assert [p.at for p in later] == [t(3) + timedelta(hours=2)]


def test_backfill_stores_no_pickup_of_a_device_not_in_the_registry(sessions: Any, influx: InfluxClient) -> None:
    """After ``lorong cities remove --purge-history`` the city's readings stay in InfluxDB: the next
    ``analytics collections`` stored their pickups again, of devices no longer registered (city "?")."""
    write_series(influx)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="REAL", kind="bin", kecamatan="Tallo", depth_mm=1000))
    with sessions.begin() as s:
        found, new = backfill(s, influx, NOW - timedelta(hours=2), NOW, 0.3)
    assert {p.device_id for p in found} == {"PARTIAL", "PENDING", "REAL"}
    assert [p.device_id for p in new] == ["REAL"]
    with sessions() as s:
        assert [r.device_id for r in s.scalars(select(CollectionRow))] == ["REAL"]
