"""`load_scenario` and `lorong sim scenario/load` against a real influxd and a fresh SQLite database."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from firmware_sim import cli as sim_cli
from firmware_sim.city import load_city, packaged_city
from firmware_sim.load import load_scenario
from firmware_sim.scenario import build_scenario, iter_messages, write_scenario
from ingest.deadletter import DeadLetterStore
from lorong.core.settings import Settings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient

pytestmark = pytest.mark.integration

LORONG = Path(sys.executable).parent / "lorong"


def _count(influx: InfluxClient, q: str) -> int:
    series = influx.query(q)
    return int(series[0].values[0][1]) if series and series[0].values else 0


def test_load_writes_every_point_and_dead_letters_at_sim_time(
        tmp_path: Path, sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    scn = build_scenario(load_city(packaged_city("small")), days=1, bins=16, stations=3)
    write_scenario(scn, tmp_path)
    rejects = [e for e in scn.truth["events"] if e["type"] == "payload_rejects"]
    assert rejects and all(e["required"] and e["info"]["count"] >= 5 for e in rejects)
    report = load_scenario(tmp_path, sessions, influx)
    dups = sum(1 for x in scn.truth["lookalikes"] if x["type"] == "duplicate")
    n_rejects = sum(e["info"]["count"] for e in rejects)
    assert report.messages == len(scn.messages)
    assert report.devices_new == len(scn.devices)
    assert report.duplicates == dups
    assert report.rejects == {"bad_value": n_rejects}
    assert report.points == len(scn.messages) - dups - n_rejects  # one point per accepted uplink
    bins = _count(influx, "SELECT count(distance) FROM waste_container")
    air = _count(influx, "SELECT count(pm25) FROM air_quality")
    assert bins + air == report.points
    assert bins == sum(1 for _rx, t, _p in scn.messages if "/up" in t and ("BIN" in t or "/devices/" in t)) \
        - dups - n_rejects
    # the dead letters carry the simulated receive times, inside the burst of each event
    letters = DeadLetterStore(sessions).list(limit=1000)
    assert len(letters) == n_rejects
    rx_of = {(m.topic, m.payload): m.received_at.isoformat() for m in iter_messages(tmp_path / "messages.jsonl")}
    for d in letters:
        at = d.received_at if d.received_at.tzinfo else d.received_at.replace(tzinfo=UTC)
        assert at == datetime.fromisoformat(rx_of[(d.topic, bytes(d.payload))])
        assert scn.truth["start"] < at.isoformat() < scn.truth["end"]
        # and their device, which the payload_rejects rule counts by
        assert d.device_id is not None and d.device_id in {e["device_id"] for e in rejects}
    # loading again keeps the devices and rewrites the same points
    again = load_scenario(tmp_path, sessions, influx)
    assert again.devices_new == 0 and again.points == report.points
    assert len(DeadLetterStore(sessions).list(limit=1000)) == n_rejects  # not stored twice
    assert _count(influx, "SELECT count(distance) FROM waste_container") == bins


def test_cli_scenario_and_load(tmp_path: Path, influx: InfluxClient,
                               make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(influx=influx)
    env = {"LORONG_DATABASE_URL": settings.database_url, "LORONG_INFLUX__URL": influx.url,
           "LORONG_INFLUX__DATABASE": influx.database, "LORONG_VAR_DIR": str(settings.var_dir), "PATH": "/usr/bin:/bin"}
    out = tmp_path / "scn"
    run = subprocess.run([str(LORONG), "sim", "scenario", "--city", str(packaged_city("small")), "--days", "1",
                          "--bins", "6", "--stations", "0", "--seed", "5", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "messages" in run.stdout and "pickups" in run.stdout and "time span" in run.stdout
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 5 and truth["days"] == 1
    run = subprocess.run([str(LORONG), "sim", "load", str(out)], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = Counter(line.split()[0] for line in run.stdout.splitlines() if line.strip())
    assert {"devices", "messages", "points", "duplicates", "rejects"} <= set(lines)
    # into a store of its own, as the README does it: a new registry file is made (loading adds devices)
    fresh = {**env, "LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'scenario.db'}",
             "LORONG_INFLUX__DATABASE": influx.database + "_scn"}
    run = subprocess.run([str(LORONG), "sim", "load", str(out)], capture_output=True, text=True, env=fresh,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "created a new database" in run.stderr and (tmp_path / "scenario.db").is_file()
    # a database whose raw readings are kept 90 days (what `stack up` makes) would drop the
    # scenario's readings of March 2026: one error line saying so, before anything is written
    retention.apply(influx, settings.influx, settings.analytics.timezone)
    run = subprocess.run([str(LORONG), "sim", "load", str(out)], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("error: the scenario starts 2026-") and len(run.stderr.strip().splitlines()) == 1
    assert "90 days" in run.stderr and "LORONG_INFLUX__DATABASE" in run.stderr and run.stdout == ""


def test_cli_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    """A bad city file or an unwritable folder: one `error:` line, exit code 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrounds: {trucks: -1}\n")
    runner = CliRunner()
    res = runner.invoke(sim_cli.app, ["scenario", "--city", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and res.output.startswith("error:") and "rounds.trucks" in res.output
    assert len(res.output.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    res = runner.invoke(sim_cli.app, ["scenario", "--days", "1", "--bins", "2", "--stations", "0",
                                      "--out", str(tmp_path / "file" / "sub")])
    assert res.exit_code == 2 and res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(sim_cli.app, ["load", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and res.output.startswith("error:")
    # a packaged city by its name, as `sim policies --city` takes it; an unknown one is one line
    res = runner.invoke(sim_cli.app, ["scenario", "--city", "small", "--days", "1", "--bins", "2", "--stations", "0",
                                      "--out", str(tmp_path / "by-name")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "by-name" / "truth.json").read_text())["city"] == "small"
    res = runner.invoke(sim_cli.app, ["scenario", "--city", "atlantis", "--out", str(tmp_path / "x2")])
    assert res.exit_code == 2 and res.output.startswith("error:") and "packaged city" in res.output


def test_load_registers_the_scenarios_city_with_its_zone_and_rounds(
        tmp_path: Path, sessions: sessionmaker[Session], influx: InfluxClient) -> None:
    """A scenario of another city than the registry's default one joins a city of its own, with the
    city file's zone, kecamatan and rounds, so the job runs it in its zone with its rounds; a
    scenario of a city already in the registry joins that one and changes nothing of it."""
    from sqlalchemy import select

    from lorong.storage.tables import CityRow, DeviceRow

    scn = build_scenario(load_city(packaged_city("banyuwangi-like")), days=1, bins=4, stations=0)
    write_scenario(scn, tmp_path / "bwi")
    load_scenario(tmp_path / "bwi", sessions, influx)
    with sessions() as s:
        city = s.get(CityRow, "banyuwangi-like")
        assert city is not None and city.timezone == "Asia/Jakarta"
        assert city.analytics == {"collection_times": ["06:30"], "collection_weekdays": [0, 1, 2, 3, 4, 5]}
        assert set(city.kecamatan) == set(scn.city.kecamatan) and city.centre_lat is not None
        cities = {d.city_id for d in s.scalars(select(DeviceRow))}
    assert cities == {"banyuwangi-like"}
    scn = build_scenario(load_city(packaged_city("makassar")), days=1, bins=3, stations=0)
    write_scenario(scn, tmp_path / "mks")
    load_scenario(tmp_path / "mks", sessions, influx)
    with sessions() as s:
        mks = s.get(CityRow, "makassar")
        assert mks is not None and not mks.analytics
        by_city = Counter(d.city_id for d in s.scalars(select(DeviceRow)))
    assert by_city == {"banyuwangi-like": 4, "makassar": 3}
