"""The simulated city: city files, determinism, truth consistency and the round trip of every uplink the
scenario writes through the real ingest pipeline (SQLite registry; no servers)."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from devices.registry import RegistryLookup
from firmware_sim.city import CITIES_DIR, load_city, packaged_city, parse_city
from firmware_sim.city_bins import BinsResult, SimBin, Stop, Thresholds, _bin_truth, fill_bin, iso
from firmware_sim.load import register_devices
from firmware_sim.scenario import Scenario, build_scenario, write_scenario
from ingest.pipeline import Pipeline
from lorong.core.model import Message

FAULT_TYPES = {"stuck", "offline", "low_battery", "fire", "tilt", "lid_open", "payload_rejects"}


@pytest.fixture(scope="module")
def small() -> Scenario:
    """The packaged CI city, simulated once for the module."""
    return build_scenario(load_city(packaged_city("small")))


def test_packaged_cities_load() -> None:
    names = {p.stem for p in CITIES_DIR.glob("*.yaml")}
    assert {"makassar", "small", "jakarta-like", "banyuwangi-like", "mwf-town"} <= names
    mks = load_city(packaged_city("makassar"))
    assert (mks.bins, mks.stations, mks.days) == (200, 20, 5)
    assert mks.start.isoformat() == "2026-03-02T00:00:00+08:00" and mks.start.weekday() == 0
    for name in names:
        load_city(packaged_city(name))


def test_defaults_and_bad_files(tmp_path: Path) -> None:
    city = parse_city({"name": "x"})
    assert city.rounds.start == "06:00" and city.rounds.speed_kmh == 20 and city.rounds.weekdays == list(range(7))
    with pytest.raises(ValueError, match=r"rounds\.trucks"):
        parse_city({"name": "x", "rounds": {"trucks": 0}})
    with pytest.raises(ValueError, match=r"faults\.stuk: unknown key"):
        parse_city({"name": "x", "faults": {"stuk": 1}})
    with pytest.raises(ValueError, match="name"):
        parse_city({"bins": 3})
    # the name is the registry city a loaded scenario joins: refused when writing, not when loading
    with pytest.raises(ValueError, match=r"name: .*city id.*'Banyuwangi Kota!'"):
        parse_city({"name": "Banyuwangi Kota!"})
    assert parse_city({"name": "Jakarta-Like"}).name == "Jakarta-Like"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_city(bad)
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"name": "j", "bins": 4, "timezone": "Asia/Jakarta"}))
    assert load_city(js).bins == 4
    with pytest.raises(ValueError, match="packaged city"):
        packaged_city("atlantis")


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    city = load_city(packaged_city("small"))
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_scenario(build_scenario(city, seed=seed, days=1, bins=12, stations=3), tmp_path / name)
    for f in ("city.json", "devices.json", "messages.jsonl", "truth.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "messages.jsonl").read_bytes() != (tmp_path / "c" / "messages.jsonl").read_bytes()
    assert (tmp_path / "a" / "truth.json").read_bytes() != (tmp_path / "c" / "truth.json").read_bytes()


def test_truth_is_consistent(small: Scenario) -> None:
    truth = small.truth
    events = truth["events"]
    types = Counter(e["type"] for e in events)
    assert set(types) >= FAULT_TYPES, types
    assert {"bin_full", "bin_full_soon"} <= set(types)
    assert {e["info"]["kind"] for e in events if e["type"] == "fire"} == {"fast", "smouldering"}
    # a stuck stretch too short to be required, and one long enough; an offline under 45 min and a longer one
    assert {e["required"] for e in events if e["type"] == "stuck"} == {True, False}
    bin_ids = {d["id"] for d in small.devices if d["kind"] == "bin"}
    assert {e["required"] for e in events if e["type"] == "offline" and e["device_id"] in bin_ids} == {True, False}
    look = Counter(x["type"] for x in truth["lookalikes"])
    assert {"bin_full", "lid_open", "fire", "duplicate", "bin_full_soon"} <= set(look), look
    # pickups on every round day, from the fixed round start on, every one by a truck of that morning
    tz = ZoneInfo(truth["timezone"])
    days = Counter(datetime.fromisoformat(p["at"]).astimezone(tz).date() for p in truth["pickups"])
    assert len(days) == truth["days"]
    assert all(0 < n <= small.city.bins for n in days.values())
    assert all(datetime.fromisoformat(p["at"]).astimezone(tz).hour >= 5 for p in truth["pickups"])
    partial = [p for p in truth["pickups"] if p["partial"]]
    assert partial and any(not p["required"] for p in partial)
    assert all(p["level_after"] < p["level_before"] or p["level_before"] == 0 for p in truth["pickups"])
    # every bin_full starts at its cycle's crossing and ends at the pickup that closes the cycle, but for
    # the cycles that came within the sensor's accuracy of the threshold and did not cross: not required
    cycles = {(c["device_id"], c["cross_at"]): c for c in truth["cycles"]}
    near = [e for e in events if e["type"] == "bin_full" and "accuracy" in e["what"]]
    assert near and not any(e["required"] for e in near)
    for e in (e for e in events if e["type"] == "bin_full" and e not in near):
        c = cycles[(e["device_id"], e["start"])]
        assert e["end"] == (c["end"] if c["picked"] else None)
        assert e["info"].get("match_from", e["start"]) <= e["start"]
    ends = {(c["device_id"], c["end"]): c for c in truth["cycles"]}
    for e in near:
        c = ends[(e["device_id"], e["end"] or truth["end"])]
        assert c["start"] <= e["start"] and (c["cross_at"] is None or c["cross_at"] >= c["end"])
    for e in (e for e in events if e["type"] == "bin_full_soon"):
        assert e["info"]["cross_at"] == e["end"] and e["start"] < e["end"]
    # cycles chain per device from the scenario start to its end
    by_dev: dict[str, list[dict[str, object]]] = {}
    for c in truth["cycles"]:
        by_dev.setdefault(str(c["device_id"]), []).append(c)
    for cs in by_dev.values():
        assert cs[0]["start"] == truth["start"] and cs[-1]["end"] == truth["end"]
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(cs))
    routes = truth["routes"]
    assert routes["km"] > 0 and routes["stops"] == len(truth["pickups"]) and 0 < routes["mean_fill_at_emptying"] < 1
    assert routes["overflow_bin_hours"] > 0
    assert truth["settings"]["full_threshold"] == 0.8 and truth["settings"]["stuck_readings"] == 12


def _sim_values(topic: str, payload: bytes) -> dict[str, float]:
    """The values the simulator put into one uplink, in canonical units."""
    body = json.loads(payload)
    if topic.startswith("v3/"):
        frame = base64.b64decode(body["uplink_message"]["frm_payload"])
        return {"batteryLevel": frame[2] / 100, "distance": float(int.from_bytes(frame[5:7], "little")),
                "tilt": float(frame[9])}
    m = body["metrics"]
    return {"distance": float(m["distance"]["value"]), "batteryLevel": m["batteryLevel"]["value"] / 100,
            "temperature": float(m["temperature"]["value"]), "tilt": float(m["tilt"]),
            "lidOpen": float(m["lidOpen"])}


def test_every_uplink_round_trips(small: Scenario, sessions: sessionmaker[Session]) -> None:
    register_devices(small.devices, sessions)
    pipeline = Pipeline(RegistryLookup(sessions))
    dup = rejected = 0
    seen_metrics: Counter[str] = Counter()
    depth = {d["id"]: (d.get("depth_mm"), d.get("blind_zone_mm")) for d in small.devices}
    for rx, topic, text in small.messages:
        payload = text.encode()
        res = pipeline.process(Message(topic, payload, datetime.fromisoformat(rx)))
        if res.error is not None:
            assert res.error.reason == "bad_value" and topic.startswith("lorong/v1/"), res.error
            rejected += 1
            continue
        if res.duplicate:
            assert not res.readings and topic.startswith("v3/")
            dup += 1
            continue
        got = {r.metric: r.value for r in res.readings}
        dev = res.readings[0].device_id
        if "/devices/" in topic or "BIN" in topic:
            want = _sim_values(topic, payload)
            for k, v in want.items():
                assert abs(got[k] - v) < 1e-9, (topic, k)
            d, blind = depth[dev]
            assert abs(got["fillingLevel"] - min(1, max(0, (d - want["distance"]) / (d - blind)))) < 1e-9
            ts = json.loads(payload).get("time") or json.loads(payload)["received_at"]
            assert res.readings[0].ts == datetime.fromisoformat(ts)
            assert datetime.fromisoformat(rx) - res.readings[0].ts < timedelta(seconds=3)
        seen_metrics.update(got)
    look = Counter(x["type"] for x in small.truth["lookalikes"])
    assert dup == look["duplicate"] > 0
    assert rejected == sum(e["info"]["count"] for e in small.truth["events"] if e["type"] == "payload_rejects")
    assert {"distance", "fillingLevel", "batteryLevel", "temperature", "tilt", "lidOpen", "rssi", "pm25"} <= set(
        seen_metrics)


def test_sensor_faults_show_in_the_uplinks(small: Scenario) -> None:
    """A stuck sensor repeats its distance; an offline one sends nothing; a fire reads hot; a tilt sets the bit."""
    msgs_by_dev: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for _rx, topic, text in small.messages:
        if "BIN" in topic or "/devices/" in topic:
            try:
                vals = _sim_values(topic, text.encode())
            except (KeyError, TypeError, ValueError):
                continue  # the malformed burst
            body = json.loads(text)
            dev = body.get("device_id") or body["end_device_ids"]["dev_eui"]
            at = datetime.fromisoformat(body.get("time") or body["received_at"]).timestamp()
            msgs_by_dev.setdefault(dev, []).append((at, vals))
    for e in small.truth["events"]:
        if e["device_id"] not in msgs_by_dev:
            continue
        start = datetime.fromisoformat(e["start"]).timestamp() - 0.5  # truth times are rounded to the second
        end = datetime.fromisoformat(e["end"]).timestamp() - 0.5 if e["end"] else float("inf")
        inside = [v for at, v in msgs_by_dev[e["device_id"]] if start <= at < end]
        if e["type"] == "stuck":
            assert len({v["distance"] for v in inside}) == 1 and len(inside) == e["info"]["readings"]
        elif e["type"] == "offline":
            assert inside == []
        elif e["type"] == "fire":
            assert max(v["temperature"] for v in inside) >= 44
        elif e["type"] in ("tilt", "lid_open"):
            key = "tilt" if e["type"] == "tilt" else "lidOpen"
            assert inside and all(v[key] == 1 for v in inside)
        elif e["type"] == "low_battery":
            before = [v for at, v in msgs_by_dev[e["device_id"]] if at < start]
            assert all(v["batteryLevel"] > 0.2 for v in before)


def test_a_bin_within_the_sensors_accuracy_of_the_line_is_in_the_truth() -> None:
    # a 1,000 mm bin with a 200 mm blind zone: the EM310-UDL's +-10 mm is +-0.0125 of its level. The bin
    # reaches 0.79 at 1 h (within 0.0125 of 0.8), crosses at 3 h, is emptied at 4 h; next cycle it stops at
    # 0.792 and is emptied at 8 h: no crossing, but an alert then is neither a hit nor a false alarm
    b = SimBin(0, "MKS-BIN-0001", False, "lorong", "Tallo", -5.1, 119.4, 1000.0, 200.0, 0.4, 0.0, 0.0,
               100.0, 0.1, 0.0, bag_t=[1800.0, 3600.0, 3 * 3600.0, 5 * 3600.0, 6 * 3600.0],
               bag_s=[0.5, 0.29, 0.05, 0.7, 0.09])
    stops = [Stop(4 * 3600.0, "full", 0.0), Stop(8 * 3600.0, "full", 0.0)]
    th = Thresholds()
    fill = fill_bin(b, stops, [600.0 * k for k in range(60)], 0.0, 10 * 3600.0, th)
    res = BinsResult([], [], [], [], [], [], {})
    _bin_truth(b, fill, [], [], 0.0, 10 * 3600.0, th, res)
    full = sorted((e for e in res.events if e["type"] == "bin_full"), key=lambda e: e["start"])
    assert [(e["start"], e["end"], e["required"], e["info"].get("match_from")) for e in full] == [
        (iso(3 * 3600.0), iso(4 * 3600.0), True, iso(3600.0)),
        (iso(6 * 3600.0), iso(8 * 3600.0), False, None)]
    assert "accuracy" in full[1]["what"]


def test_a_bin_its_truck_empties_soon_after_it_becomes_full_needs_no_warning() -> None:
    # crosses 0.8 at 3.5 h and is emptied 20 min later: its truck was already on the way, so neither its
    # bin_full nor a warning before it is required (an alert is neither a hit nor a false alarm); the next
    # cycle crosses at 5 h and stands full until 8 h: both required
    b = SimBin(0, "MKS-BIN-0001", False, "lorong", "Tallo", -5.1, 119.4, 1000.0, 200.0, 0.4, 0.0, 0.0,
               100.0, 0.1, 0.0, bag_t=[1800.0, 3600.0, 3.5 * 3600.0, 5 * 3600.0],
               bag_s=[0.5, 0.29, 0.05, 0.85])
    stops = [Stop(3.5 * 3600.0 + 1200.0, "full", 0.0), Stop(8 * 3600.0, "full", 0.0)]
    th = Thresholds()
    fill = fill_bin(b, stops, [600.0 * k for k in range(60)], 0.0, 10 * 3600.0, th)
    res = BinsResult([], [], [], [], [], [], {})
    _bin_truth(b, fill, [], [], 0.0, 10 * 3600.0, th, res)
    got = sorted((e["type"], e["end"], e["required"]) for e in res.events if e["type"].startswith("bin_full"))
    assert got == [("bin_full", iso(3.5 * 3600.0 + 1200.0), False), ("bin_full", iso(8 * 3600.0), True),
                   ("bin_full_soon", iso(3.5 * 3600.0), False), ("bin_full_soon", iso(5 * 3600.0), True)]
    soon = next(e for e in res.events if e["type"] == "bin_full_soon" and not e["required"])
    assert "emptied 20 min after" in soon["what"]


def test_a_bin_that_becomes_full_just_before_the_scenario_ends_is_not_required() -> None:
    # tuning city (100 bins, seed 2): a bin crossed 0.8 at 15:47 UTC, 13 minutes before the scenario's
    # end; the rule confirms a full bin on three readings (half an hour), after the end: no replay can
    # see it, so its bin_full is not required (an alert is neither a hit nor a false alarm). One that
    # crosses 40 minutes before the end is required.
    th = Thresholds()
    end = 10 * 3600.0
    for cross_h, required in ((end / 3600.0 - 13 / 60, False), (end / 3600.0 - 40 / 60, True)):
        b = SimBin(0, "MKS-BIN-0001", False, "lorong", "Tallo", -5.1, 119.4, 1000.0, 200.0, 0.4, 0.0, 0.0,
                   100.0, 0.1, 0.0, bag_t=[1800.0, cross_h * 3600.0], bag_s=[0.5, 0.35])
        fill = fill_bin(b, [], [600.0 * k for k in range(60)], 0.0, end, th)
        res = BinsResult([], [], [], [], [], [], {})
        _bin_truth(b, fill, [], [], 0.0, end, th, res)
        full = [e for e in res.events if e["type"] == "bin_full"]
        assert [(e["start"], e["end"], e["required"]) for e in full] == [(iso(cross_h * 3600.0), None, required)]
        if not required:
            assert "13 min before the scenario's end" in full[0]["what"]


def test_a_city_starting_after_its_round_has_no_pickup_before_its_start() -> None:
    # the small city's round leaves at 06:00; started at 09:00, the first day's round has gone already
    city = load_city(packaged_city("small"))
    city = city.model_copy(update={"start": datetime.fromisoformat("2026-03-02T09:00:00+08:00"), "days": 2})
    truth = build_scenario(city).truth
    start = datetime.fromisoformat(truth["start"])
    assert truth["pickups"] and min(datetime.fromisoformat(p["at"]) for p in truth["pickups"]) >= start
    # ... and the rounds inside it all come: 06:00 on the 3rd and on the 4th (the window ends 09:00 on the 4th)
    tz = ZoneInfo(truth["timezone"])
    days = {datetime.fromisoformat(p["at"]).astimezone(tz).date().isoformat() for p in truth["pickups"]}
    assert days == {"2026-03-03", "2026-03-04"}, days
    by_dev: dict[str, list[dict[str, object]]] = {}
    for c in truth["cycles"]:
        by_dev.setdefault(str(c["device_id"]), []).append(c)
    for cs in by_dev.values():
        assert cs[0]["start"] == truth["start"] and cs[-1]["end"] == truth["end"]
        assert all(a["end"] == b["start"] and a["start"] < a["end"] for a, b in itertools.pairwise(cs))
