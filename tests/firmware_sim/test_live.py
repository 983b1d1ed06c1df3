"""The live city (`firmware_sim.live.LiveCity`): deterministic by seed, bags fill the bins over simulated
time, the trucks' round stops empty them at their times, and a crew's `empty` shows on the next reading."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.city import FaultsConfig, load_city, packaged_city
from firmware_sim.city_bins import STEP_S
from firmware_sim.live import EMPTIED_MAX, RX_LAG_S, LiveCity

START = datetime.fromisoformat("2026-03-02T10:17:00+08:00")  # a Monday morning, after the 06:00 round


def city(seed: int | None = None, bins: int = 12, stations: int = 2, faults: bool = True) -> LiveCity:
    """The small packaged city from START; ``faults=False``: no sensor faults (every reading true +-10 mm)."""
    cfg = load_city(packaged_city("small"))
    if not faults:
        none = FaultsConfig.model_validate({k: 0 for k in FaultsConfig.model_fields})
        cfg = cfg.model_copy(update={"faults": none})
    return LiveCity(cfg, START, bins=bins, stations=stations, seed=seed)


def distance_mm(payload: bytes) -> int:
    """The distance of a bin uplink: native JSON, or the EM310-UDL frame (channel 0x03 0x82, uint16 LE)."""
    body = json.loads(payload)
    if "metrics" in body:
        return int(body["metrics"]["distance"]["value"])
    frame = base64.b64decode(body["uplink_message"]["frm_payload"])
    at = frame.index(b"\x03\x82")
    return int.from_bytes(frame[at + 2:at + 4], "little")


def level_of(c: LiveCity, device_id: str, payload: bytes) -> float:
    b = c.bins[device_id].sim
    return (b.depth_mm - distance_mm(payload)) / (b.depth_mm - b.blind_zone_mm)


def readings(msgs: list[tuple[float, str, bytes]], device_id: str) -> list[tuple[float, bytes]]:
    return [(rx, p) for rx, t, p in msgs if device_id.lower() in t.lower()]


def test_same_seed_same_city_other_seed_other_city() -> None:
    until = START.timestamp() + 6 * 3600
    a, b, other = city(seed=3), city(seed=3), city(seed=4)
    msgs = a.advance(until)
    assert msgs == b.advance(until)
    assert len(msgs) > 12 * 30 + 2 * 60  # 12 bins every 10 min, 2 stations every 5 min, minus offline stretches
    assert [m[2] for m in msgs] != [m[2] for m in other.advance(until)]
    assert a.registry_rows() == b.registry_rows() and len(a.registry_rows()) == 14
    # the step size does not matter: the same clock reached in small steps gives the same uplinks
    c = city(seed=3)
    small = [m for k in range(1, 6 * 60 + 1) for m in c.advance(START.timestamp() + k * 60)]
    assert sorted(small) == msgs
    # nothing is received after the clock, nothing before the start
    assert all(START.timestamp() <= rx <= until for rx, _t, _p in msgs)


def test_bags_raise_the_level_between_rounds() -> None:
    c = city(seed=5)
    t0, t1 = START.timestamp(), START.timestamp() + 10 * 3600  # 10:17 to 20:17, no round (06:00) between
    before = {d: lb.level for d, lb in c.bins.items()}
    c.advance(t1)
    rose = 0
    for d, lb in c.bins.items():
        assert not any(t0 < s.t <= t1 for s in lb.stops)
        bags = [s for t, s in zip(lb.sim.bag_t, lb.sim.bag_s, strict=True) if t0 < t <= lb.settled_t]
        assert lb.level == pytest.approx(min(1.0, before[d] + sum(bags)), abs=1e-9) or lb.level == 1.0
        rose += lb.level > before[d] + 0.05
    assert rose >= 9  # a day's waste arrives mostly by day: most bins gain more than 5 %


def test_round_stop_empties_the_bin_at_its_time() -> None:
    c = city(seed=5, faults=False)
    t0, t1 = START.timestamp(), START.timestamp() + 29 * 3600  # up to the next day's round and past it
    msgs = c.advance(t1 + 2 * STEP_S)
    checked = 0
    for dev, lb in c.bins.items():
        for stop in (s for s in lb.stops if s.outcome == "full" and t0 < s.t < t1):
            sent = readings(msgs, dev)
            before = [p for rx, p in sent if rx < stop.t]
            after = [p for rx, p in sent if rx > stop.t + RX_LAG_S]
            assert level_of(c, dev, before[-1]) > 0.15  # a day's waste
            # the stop leaves 0-3 %, then bags until the next reading; the sensor reads +-10 mm (< 0.012 here)
            bags = sum(z for t, z in zip(lb.sim.bag_t, lb.sim.bag_s, strict=True) if stop.t < t <= stop.t + STEP_S)
            assert level_of(c, dev, after[0]) < stop.param + bags + 0.012
            assert stop.param + bags < 0.1
            checked += 1
    assert checked >= 8  # most bins of the round (the small city skips or partly empties 20 % of stops)


def test_empty_makes_the_next_reading_low() -> None:
    c = city(seed=5, faults=False)
    c.advance(START.timestamp() + 8 * 3600)
    dev = max(c.bins, key=lambda d: c.bins[d].level)
    assert c.bins[dev].level > 0.6
    untouched = city(seed=5, faults=False)
    untouched.advance(START.timestamp() + 8 * 3600)
    assert c.empty(dev) and not c.empty("NOT-A-BIN")
    nxt = readings(c.advance(c.clock + STEP_S + RX_LAG_S), dev)
    same = readings(untouched.advance(untouched.clock + STEP_S + RX_LAG_S), dev)
    assert nxt and same
    assert level_of(c, dev, nxt[0][1]) < EMPTIED_MAX + 0.02
    assert level_of(untouched, dev, same[0][1]) > 0.55  # without the crew it stays full
    # an emptying reported with a time before the last reading counts from that reading on
    c.bins[dev].level = 0.9
    assert c.empty(dev, datetime.fromtimestamp(c.clock, START.tzinfo) - timedelta(hours=3))
    later = readings(c.advance(c.clock + STEP_S + RX_LAG_S), dev)
    assert level_of(c, dev, later[0][1]) < EMPTIED_MAX + 0.02


def test_crew_source_is_polled_and_step_uses_the_clock_given() -> None:
    calls: list[float] = []
    c = city(seed=5, faults=False)
    c.advance(START.timestamp() + 8 * 3600)
    dev = max(c.bins, key=lambda d: c.bins[d].level)
    emptied_at = datetime.fromtimestamp(c.clock, START.tzinfo)

    def crew() -> list[tuple[str, datetime]]:
        calls.append(c.clock)
        return [(dev, emptied_at)] if len(calls) == 1 else []

    c.crew, c.crew_poll_s = crew, 5.0
    now = datetime.fromtimestamp(c.clock + STEP_S + RX_LAG_S, START.tzinfo)
    out = c.step(1.0, now)
    assert len(calls) == 1 and c.clock == now.timestamp()
    got = [p for t, p in out if dev.lower() in t.lower()]
    assert got and level_of(c, dev, got[0]) < EMPTIED_MAX + 0.02
    c.step(1.0, now + timedelta(seconds=1))  # within crew_poll_s: not polled again
    assert len(calls) == 1
    with pytest.raises(ValueError, match="tz-aware"):
        LiveCity(load_city(packaged_city("small")), START.replace(tzinfo=None))


def test_demo_refuses_a_bad_city_file_in_one_line(tmp_path: Path) -> None:
    """`lorong demo --city FILE` with a bad key: one `error:` line naming it, exit 2, nothing started."""
    bad = tmp_path / "city.yaml"
    bad.write_text("name: x\nrounds: {trucks: 0}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORONG_")} | {"LORONG_VAR_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "lorong.cli", "demo", "--city", str(bad)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {bad}: rounds.trucks: Input should be greater than or "
                                                "equal to 1"]
    assert [p.name for p in tmp_path.iterdir()] == ["city.yaml"]  # no broker, database or spool made


def test_the_city_goes_on_past_its_first_planned_week() -> None:
    """Bags, rounds and air are planned a week at a time: the eighth day has them too."""
    c = city(seed=2, bins=6, stations=1, faults=False)
    day8 = START.timestamp() + 7 * 86400
    c.advance(day8)
    msgs = c.advance(day8 + 86400)
    assert len(c._windows) == 2
    air = sum("-air-" in t.lower() for _rx, t, _p in msgs)
    assert air >= 280  # a station every 5 min: 288 a day
    assert len(msgs) - air == 6 * 144  # a bin every 10 min
    for lb in c.bins.values():
        assert any(day8 < s.t <= day8 + 86400 for s in lb.stops)  # the round comes on the eighth day
        assert any(day8 < t <= day8 + 86400 for t in lb.sim.bag_t)


def test_resume_goes_on_after_the_stored_readings_from_the_stored_level() -> None:
    """A restarted demo (:func:`firmware_sim.live_store.backfill`): the readings an earlier run stored are
    not sent again, a bin goes on from its stored level, a station after its stored uplinks."""
    full, resumed = city(seed=5, faults=False), city(seed=5, faults=False)
    dev, station = sorted(full.bins)[0], full.registry_rows()[-1]["id"]
    stored_until = START + timedelta(hours=5)
    before = full.advance(stored_until.timestamp())
    last_bin = max(rx for rx, _p in readings(before, dev))
    last_air = max(rx for rx, _p in readings(before, station))
    assert resumed.resume(dev, datetime.fromtimestamp(last_bin, START.tzinfo), level=0.8)
    assert resumed.resume(station, datetime.fromtimestamp(last_air, START.tzinfo))
    assert not resumed.resume("NOT-A-DEVICE", stored_until)
    out = resumed.advance(stored_until.timestamp() + 2 * STEP_S + RX_LAG_S)
    bin_msgs, air_msgs = readings(out, dev), readings(out, station)
    assert bin_msgs and all(rx > last_bin for rx, _p in bin_msgs)  # nothing stored is sent again
    assert air_msgs and all(rx > last_air for rx, _p in air_msgs)
    assert level_of(resumed, dev, bin_msgs[0][1]) == pytest.approx(0.8, abs=0.05)  # no jump from the stored level
    sent = [json.loads(p) for _rx, p in readings(before, dev)]
    counter = [json.loads(p) for _rx, p in bin_msgs]
    seq = [b.get("seq", b.get("uplink_message", {}).get("f_cnt")) for b in (sent[-1], counter[0])]
    assert seq[1] == seq[0] + 1  # the uplink counter counts through the readings not sent
    others = [t for _rx, t, _p in out if dev.lower() not in t.lower() and station.lower() not in t.lower()]
    assert len(others) > 0  # the other devices send their whole past
