"""Replay on a real InfluxDB and SQLite: the job stepped through a bin's fill and pickup, the
decisions JSON, and ``lorong analytics replay`` / ``score`` end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from analytics.alerts import AlertBook
from analytics.cli import app
from analytics.replay import ReplayError, leftovers, replay, reset
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms, utcnow
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertRow, CollectionRow

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # Monday 08:00 WITA; next round 06:00 WITA = 22:00 UTC
STEP = timedelta(minutes=10)
OFFSET = timedelta(minutes=5)  # readings fall between two steps
CROSS, PICKUP, N = 25, 30, 42  # B1's first reading >= 0.8, its pickup reading, readings per bin


def reading_at(k: int) -> datetime:
    """Time of reading ``k``: T0 + 5 min + k x 10 min."""
    return T0 + OFFSET + k * STEP


def b1_level(k: int) -> float:
    """B1: 0.30 rising 0.02 per reading (0.80 at CROSS), emptied at PICKUP to 0.03, then slowly filling."""
    return round(0.30 + 0.02 * k, 3) if k < PICKUP else round(0.03 + 0.005 * (k - PICKUP), 3)


def populate(sessions: Any, influx: InfluxClient) -> None:
    """B1 as :func:`b1_level`; B2 filling slowly from 0.2 (never full)."""
    with sessions.begin() as s:
        for dev in ("B1", "B2"):
            add_device(s, DeviceIn(id=dev, kind="bin", kecamatan="Wajo", depth_mm=1000, blind_zone_mm=150,
                                   lat=-5.125, lon=119.412, installed_at=T0 - timedelta(days=30)))
    tags = {"B1": b1_level, "B2": lambda k: round(0.2 + 0.004 * k, 3)}
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: "Wajo"},
                             {schema.FIELD_FILL: level(k)}, to_ms(reading_at(k)))
                        for dev, level in tags.items() for k in range(N)])


START, END = T0 + timedelta(hours=3), T0 + timedelta(hours=7)  # readings 0..17 are history at START


def test_replay_fill_and_pickup(sessions: Any, influx: InfluxClient) -> None:
    populate(sessions, influx)
    seen: list[tuple[datetime, int, int]] = []
    d = replay(sessions, influx, AnalyticsSettings(), START, END, STEP, check_every=2,
               progress=lambda now, done, total, opened: seen.append((now, done, total)))
    assert (d.steps, d.checked) == (25, 13)
    assert seen == [(END, 25, 25)]  # less than a simulated day: only the last step
    assert d.changed == []

    full = [a for a in d.alerts if a["type"] == "bin_full"]
    # the mean of the newest four readings reaches 0.8 at CROSS + 2 (0.78, 0.80, 0.82, 0.84), first
    # visible to the step after it
    assert [(a["device_id"], a["opened_at"], a["severity"]) for a in full] == [
        ("B1", (T0 + (CROSS + 3) * STEP).isoformat(), "major")]
    # the pickup is confirmed by the reading after it (PICKUP + 1), visible from step PICKUP + 2
    assert full[0]["cleared_at"] == (T0 + (PICKUP + 2) * STEP).isoformat()
    assert full[0]["clear_reason"] == f"emptied at {reading_at(PICKUP).isoformat()}"
    assert full[0]["details"]["fillingLevel"] == 0.84
    assert {a["type"] for a in d.alerts} <= {"bin_full", "bin_full_soon"}
    assert d.pickups == [{"device_id": "B1", "at": reading_at(PICKUP).isoformat(),
                          "level_before": b1_level(PICKUP - 1), "level_after": b1_level(PICKUP)}]

    doc = d.to_json()
    assert (doc["version"], doc["from"], doc["to"], doc["step_s"], doc["steps"]) == (
        1, START.isoformat(), END.isoformat(), 600.0, 25)
    assert doc["idempotency"] == {"checked": 13, "changed": []}
    fc = doc["forecasts"]
    assert {f["device_id"] for f in fc} == {"B1", "B2"}
    # B1 is not recorded while at or above the threshold
    b1_now = {f["now"] for f in fc if f["device_id"] == "B1"}
    assert (T0 + (CROSS + 3) * STEP).isoformat() not in b1_now and START.isoformat() in b1_now
    first = next(f for f in fc if f["device_id"] == "B1" and f["now"] == START.isoformat())
    assert first["level"] == b1_level(17)
    # 0.02 per 10 min: from reading 17 (0.64) the line crosses 0.8 eight readings later, at reading CROSS
    assert abs(datetime.fromisoformat(first["full_at"]) - reading_at(CROSS)) <= timedelta(minutes=15)
    assert leftovers(sessions, START) != {}


def test_cli_replay_then_score(sessions: Any, influx: InfluxClient, db_url: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    populate(sessions, influx)
    monkeypatch.setenv("LORONG_DATABASE_URL", db_url)
    monkeypatch.setenv("LORONG_INFLUX__URL", influx.url)
    monkeypatch.setenv("LORONG_INFLUX__DATABASE", influx.database)
    monkeypatch.setenv("LORONG_VAR_DIR", str(tmp_path / "var"))
    truth = {"version": 1, "city": "test", "seed": 1, "days": 1, "start": START.isoformat(), "end": END.isoformat(),
             "events": [{"type": "bin_full", "device_id": "B1", "start": reading_at(CROSS).isoformat(),
                         "end": reading_at(PICKUP).isoformat(), "required": True, "what": "", "info": {}}],
             "lookalikes": [],
             "pickups": [{"device_id": "B1", "at": reading_at(PICKUP).isoformat(), "required": True}],
             "cycles": [{"device_id": "B1", "start": T0.isoformat(), "end": reading_at(PICKUP).isoformat(),
                         "cross_at": reading_at(CROSS).isoformat()}],
             "routes": {"policy": "fixed", "km": 1.0}}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    out = tmp_path / "decisions.json"
    runner = CliRunner()
    res = runner.invoke(app, ["replay", "--truth", str(tmp_path / "truth.json"), "--step", "30m", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(f"{END.isoformat(timespec='minutes')}  step 9/9")
    assert lines[1].startswith("9 steps of 1800 s, 9 repeated, in ")
    assert lines[2].startswith("alerts opened: bin_full 1")
    assert lines[3].startswith("pickups: 1, forecasts: ") and lines[3].endswith("0 of 9 repeats changed something")
    doc = json.loads(out.read_text())
    assert doc["steps"] == 9 and doc["step_s"] == 1800.0 and len(doc["pickups"]) == 1
    assert doc["scenario"] == {"city": "test", "seed": 1}  # what score checks the truth against

    again = runner.invoke(app, ["replay", "--from", START.isoformat(), "--to", END.isoformat(), "--out", str(out)])
    assert again.exit_code == 2 and again.stderr.startswith("error: the database already holds the job's output")
    bad = runner.invoke(app, ["replay", "--from", "2026-03-02T03:00", "--to", END.isoformat()])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --from needs an offset, e.g. 2026-11-30T10:00+08:00"
    bad = runner.invoke(app, ["replay", "--truth", str(tmp_path / "truth.json"), "--step", "10 minutes"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --step '10 minutes'")

    res = runner.invoke(app, ["score", "--truth", str(tmp_path), "--decisions", str(out), "--warmup-h", "0"])
    assert res.exit_code == 0, res.output
    assert "bin_full" in res.output and "pickups: precision 1.000, recall 1.000" in res.output
    res = runner.invoke(app, ["score", "--truth", str(tmp_path), "--decisions", str(out), "--warmup-h", "0", "--json"])
    doc = json.loads(res.output)
    full = next(x for x in doc["decisions"] if x["type"] == "bin_full")
    assert (full["hits"], full["false_alarms"], full["misses"]) == (1, 0, 0)
    assert doc["idempotency"] == {"checked": 9, "changed": 0}


def test_reset_refuses_a_live_database(sessions: Any, influx: InfluxClient) -> None:
    """`replay --reset` deleted a running city's alerts, their history and the crews' Emptied reports
    (the refusal without --reset even pointed to it): a database where people acted is refused."""
    populate(sessions, influx)
    replay(sessions, influx, AnalyticsSettings(), START, END, STEP, check_every=0)
    reset(sessions)  # a replay's own output: fine
    replay(sessions, influx, AnalyticsSettings(), START, END, STEP, check_every=0)
    with sessions.begin() as s:
        alert, _ = AlertBook(s).raise_("B2", "tilt", "major", END, {}, "Wajo")
        AlertBook(s).acknowledge(alert.id, utcnow(), "crew:budi")
        s.add(CollectionRow(device_id="B2", at=END, level_before=0.5, level_after=0.0, source="crew", actor="budi"))
    with pytest.raises(ReplayError, match=r"holds 2 row\(s\) people made"):
        reset(sessions)
    with sessions() as s:
        assert s.scalars(select(AlertRow)).first() is not None  # nothing deleted


def test_replay_runs_each_city_in_its_zone_with_its_rounds(tmp_path: Path, sessions: Any,
                                                            influx: InfluxClient) -> None:
    """A loaded scenario of a WIB town with its round at 06:30 (its own registry city): the replayed
    job expects a bin never emptied yet at 06:30 WIB (23:30 UTC), not at the deployment's 06:00 WITA."""
    from firmware_sim.city import load_city, packaged_city
    from firmware_sim.load import load_scenario
    from firmware_sim.scenario import build_scenario, write_scenario

    scn = build_scenario(load_city(packaged_city("banyuwangi-like")), days=1, bins=4, stations=0)
    write_scenario(scn, tmp_path)
    load_scenario(tmp_path, sessions, influx)
    start = datetime.fromisoformat(scn.truth["start"]) + timedelta(hours=3)  # 03:00 WIB, Wednesday
    decisions = replay(sessions, influx, AnalyticsSettings(), start, start + STEP, STEP, 0)
    assert len(decisions.forecasts) == 8
    due = {datetime.fromtimestamp(f[4], UTC) for f in decisions.forecasts if f[4] is not None}
    assert due == {datetime(2026, 3, 3, 23, 30, tzinfo=UTC)}
