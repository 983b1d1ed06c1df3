"""The simulated city's air stations (:mod:`firmware_sim.city_air`): pure, no services."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import zip_longest
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from analytics.humidity import kappa_correct
from devices.registry import DeviceIn
from firmware_sim.city_air import (
    PM25_ACCURACY,
    PM25_LIMIT,
    AirResult,
    StationTruth,
    _Clock,
    _Pulse,
    coincident_plumes,
    simulate_air,
    simulate_air_with_truth,
)
from firmware_sim.makassar import KECAMATAN
from ingest.formats import format_for_topic, get_parser
from ingest.validate import validate
from lorong.core.model import DeviceInfo, DeviceKind

TZ = "Asia/Makassar"
START = datetime(2026, 3, 2, tzinfo=ZoneInfo(TZ))
N, DAYS, SEED = 10, 3, 1


def run(seed: int = SEED, n: int = N, days: int = DAYS, **air: object) -> tuple[AirResult, dict[str, StationTruth]]:
    """A small city's air part."""
    return simulate_air_with_truth(dict(air), KECAMATAN, n, START, days, seed, TZ)


@pytest.fixture(scope="module")
def city() -> tuple[AirResult, dict[str, StationTruth]]:
    """10 stations, 3 days."""
    return run()


def _t(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_same_seed_same_city_other_seed_differs(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """The same arguments give identical results; another seed gives other ones."""
    again = simulate_air({}, KECAMATAN, N, START, DAYS, SEED, TZ)
    assert again == city[0]
    other = simulate_air({}, KECAMATAN, N, START, DAYS, SEED + 1, TZ)
    assert other.messages != city[0].messages
    assert other.events != city[0].events


def test_devices_are_registry_rows(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Every row is accepted by DeviceIn; ids follow MKS-AIR-00."""
    rows = city[0].devices
    assert [r["id"] for r in rows] == [f"MKS-AIR-{i:02d}" for i in range(N)]
    for r in rows:
        dev = DeviceIn(**r)
        assert dev.kind == "air" and dev.model == "LRG-PM1" and dev.report_interval_s == 300
        assert dev.kecamatan in KECAMATAN


def test_messages_parse_into_the_intended_values(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Each uplink is lorong-json, parses with the real parser and passes validation with the
    simulated values (RH in % becomes a fraction); messages are sorted by rx."""
    result, truth = city
    parse = get_parser("lorong-json")
    clipped = 0
    rx = [m[0] for m in result.messages]
    assert rx == sorted(rx)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in rx)
    for at, topic, payload in result.messages:
        assert format_for_topic(topic) == "lorong-json"
        [up] = parse(payload, topic, at)
        s = truth[up.device_id]
        assert up.fcnt is not None
        k = up.fcnt - 1
        assert s.sent[k] and s.times[k] == at == up.ts
        values = {r.metric: (r.value, r.unit) for r in up.readings}
        assert values["pm25"] == (s.reported_pm25[k], "ug/m3")
        assert values["relativeHumidity"] == (s.rh_pct[k], "%")
        pm10 = values.get("pm10", (None, "ug/m3"))  # left out at the SDS011 clip
        assert pm10[1] == "ug/m3" and values["temperature"][1] == "degC"
        if pm10[0] is not None:
            assert 1.4 <= pm10[0] / s.reported_pm25[k] <= 1.9 or s.reported_pm25[k] < 5
        else:
            clipped += 1
            assert s.reported_pm25[k] * 1.95 >= 999.9
        assert 20.0 <= values["temperature"][0] <= 34.0
        readings = validate(list(up.readings), DeviceInfo(up.device_id, DeviceKind.AIR), at)
        assert {r.metric: r.value for r in readings}["relativeHumidity"] == pytest.approx(s.rh_pct[k] / 100)
    assert clipped <= len(result.messages) / 100  # haze in a humid night can reach the clip
    # one message per report interval per station, minus the outage
    assert len(result.messages) == sum(int(s.sent.sum()) for s in truth.values())
    assert len(result.messages) == pytest.approx(N * DAYS * 288, abs=N + 36)


def test_episode_has_three_stations_rising_within_an_hour(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Each pm25_episode lists >= 3 stations whose true PM2.5 rose within one hour, each with a
    pm25_spike that is not required; the episode starts when the third starts to rise."""
    result, truth = city
    episodes = [e for e in result.events if e["type"] == "pm25_episode"]
    assert len(episodes) == 2
    for ep in episodes:
        assert ep["device_id"] == "city" and ep["required"]
        members = ep["info"]["stations"]
        assert len(members) >= 3 and 0.4 * N - 0.5 <= len(members) <= 0.8 * N + 0.5
        spikes = [e for e in result.events if e["type"] == "pm25_spike"
                  and e["info"].get("episode") == ep["info"]["episode"]]
        assert sorted(e["device_id"] for e in spikes) == members
        assert not any(e["required"] for e in spikes)
        starts = sorted(_t(e["start"]) for e in spikes)
        assert starts[2] - starts[0] <= timedelta(hours=1)
        assert _t(ep["start"]) == starts[2]
        assert _t(ep["end"]) - _t(ep["start"]) >= timedelta(hours=2)
        risen = 0
        for e in spikes:
            s = truth[e["device_id"]]
            times = pd.DatetimeIndex(s.times)
            before = s.true_pm25[times.get_indexer([_t(e["start"]) - timedelta(minutes=5)], method="nearest")[0]]
            after = s.true_pm25[times.get_indexer([_t(e["start"]) + timedelta(minutes=45)], method="nearest")[0]]
            risen += after - before >= 10.0
        assert risen >= 3


def test_morning_rise_is_in_the_data_but_not_an_event(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Reported PM2.5 is higher at 06:30-08:30 local than at 11:00-13:00 on most station-days;
    it is a lookalike (one per station-day), never the source of an event."""
    result, truth = city
    morning = [x for x in result.lookalikes if x["what"] == "morning traffic rise"]
    assert len(morning) == N * DAYS
    assert {x["type"] for x in morning} == {"pm25_spike"}
    busy = [(x["device_id"], _t(x["at"]), _t(x["end"])) for x in result.lookalikes if x["what"].startswith("rain")]
    busy += [(e["device_id"], _t(e["start"]), _t(e["end"])) for e in result.events if e["type"] == "pm25_spike"]
    higher = total = 0
    for device_id, s in truth.items():
        times = pd.DatetimeIndex(s.times)
        calm = s.sent.copy()
        for d, a, b in busy:
            if d == device_id:
                calm &= ~np.asarray((times >= a) & (times <= b))  # a plume, haze or rain
        local = times.tz_convert(TZ)
        hour = local.hour + local.minute / 60
        for day in sorted(set(local.date)):
            on = (local.date == day) & calm
            am = s.reported_pm25[on & (hour >= 6.5) & (hour < 8.5)]
            noon = s.reported_pm25[on & (hour >= 11) & (hour < 13)]
            if len(am) >= 6 and len(noon) >= 6:
                total += 1
                higher += am.mean() > 1.3 * noon.mean()
    assert total >= N and higher >= 0.9 * total
    assert {e["info"]["source"] for e in result.events if e["type"] == "pm25_spike"} == {"open_burning", "episode"}


def test_humid_over_reads_are_lookalikes_and_correctable(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """With kappa > 0 the sensor over-reads at high RH (over-read lookalikes exist, each a stretch
    where the reported hourly mean is above the limit and the true one is not); the kappa-Koehler
    correction with the station's own kappa recovers the true value within 5 %."""
    result, truth = city
    humid = [x for x in result.lookalikes if x["what"].startswith("humid over-read")]
    assert len(humid) >= N
    assert {x["type"] for x in humid} == {"pm25_high"}
    for x in humid:
        s = truth[x["device_id"]]
        times = pd.DatetimeIndex(s.times)
        hour = _t(x["at"])
        while hour < _t(x["end"]):
            sel = np.asarray((times >= hour) & (times < hour + timedelta(hours=1))) & s.sent
            assert s.reported_pm25[sel].mean() > PM25_LIMIT >= s.true_pm25[sel].mean()
            hour += timedelta(hours=1)
    for s in truth.values():
        assert 0.20 <= s.kappa <= 0.40
        wet = s.rh_pct >= 90
        assert np.median(s.reported_pm25[wet] / s.true_pm25[wet]) > 2.0
        ok = (s.rh_pct <= 95) & (s.true_pm25 >= 5)
        corrected = np.asarray([kappa_correct(p, h / 100, s.kappa)
                                for p, h in zip(s.reported_pm25[ok], s.rh_pct[ok], strict=True)])
        assert np.max(np.abs(corrected / s.true_pm25[ok] - 1)) <= 0.05


def test_pm25_high_follows_the_true_rolling_hour(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """pm25_high events are the stretches where the true 1-hour mean (pandas, window (t-1h, t])
    exceeds 55.4, dips under 30 min merged; required from 20 minutes on (and 5 % over the limit:
    test_pm25_high_allows_for_the_corrected_sensors_accuracy)."""
    result, truth = city
    highs = [e for e in result.events if e["type"] == "pm25_high" and e["what"].startswith("true 1-hour mean")]
    assert highs
    checked = 0
    for device_id, s in truth.items():
        roll = pd.Series(s.true_pm25, index=pd.DatetimeIndex(s.times)).rolling("1h").mean()
        above = roll > PM25_LIMIT
        starts = list(roll.index[above & ~above.shift(1, fill_value=False)])
        ends = list(roll.index[~above & above.shift(1, fill_value=False)])
        merged: list[tuple[datetime, datetime | None]] = []
        for a, b in zip_longest(starts, ends):
            if merged and merged[-1][1] is not None and a - merged[-1][1] < timedelta(minutes=30):
                merged[-1] = (merged[-1][0], b)  # a dip under 30 min is the same occurrence
            else:
                merged.append((a, b))
        mine = sorted((e for e in highs if e["device_id"] == device_id), key=lambda e: e["start"])
        assert [(_t(e["start"]), _t(e["end"]) if e["end"] else None) for e in mine] == merged
        for e in mine:
            end = _t(e["end"]) if e["end"] else START + timedelta(days=DAYS)
            long_enough = end - _t(e["start"]) >= timedelta(minutes=20)
            assert long_enough or not e["required"]
            checked += 1
    assert checked == len(highs)


def test_pm25_high_allows_for_the_corrected_sensors_accuracy() -> None:
    """Within PM25_ACCURACY (5 %) of the limit a corrected sensor cannot tell the hour from one over it:
    a crossing is on time from when the true 1-hour mean came that close (``info.match_from``), one
    that never went 5 % over is not required, and a stretch that came within 5 % without crossing is a
    ``required: false`` event (an alert there is neither a hit nor a false alarm)."""
    near_line, sure_line = PM25_LIMIT * (1 - PM25_ACCURACY), PM25_LIMIT * (1 + PM25_ACCURACY)
    seen = {"early": 0, "not_sure": 0, "near_only": 0, "required": 0}
    for seed in (1, 2):
        result, truth = run(seed=seed, n=10, days=3)
        for device_id, s in truth.items():
            roll = pd.Series(s.true_pm25, index=pd.DatetimeIndex(s.times)).rolling("1h").mean()
            mine = [e for e in result.events if e["type"] == "pm25_high" and e["device_id"] == device_id]
            for e in mine:
                a = _t(e["start"])
                b = _t(e["end"]) if e["end"] else roll.index[-1] + timedelta(seconds=1)
                inside = roll[(roll.index >= a) & (roll.index < b)]
                if e["what"].startswith("true 1-hour mean"):
                    assert inside.iloc[0] > PM25_LIMIT
                    assert e["required"] == (inside.max() >= sure_line and b - a >= timedelta(minutes=20))
                    seen["required" if e["required"] else "not_sure"] += 1
                    frm = _t(e["info"].get("match_from", e["start"]))
                    assert frm <= a
                    lead = roll[(roll.index >= frm) & (roll.index < a)]
                    assert (lead > near_line).all()
                    before = roll[roll.index < frm]
                    assert before.empty or before.iloc[-1] <= near_line  # the whole near stretch
                    seen["early"] += frm < a
                else:
                    assert not e["required"] and e["what"].startswith("within the corrected sensor")
                    assert (inside > near_line).all() and inside.max() <= PM25_LIMIT
                    seen["near_only"] += 1
            # every stretch near the limit that never crossed it has its event
            near = roll > near_line
            starts = roll.index[near & ~near.shift(1, fill_value=False)]
            for st in starts:
                run_ = roll[st:]
                stop = run_.index[~(run_ > near_line)]
                stretch = run_[: stop[0]] if len(stop) else run_
                if stretch.iloc[:-1].max() <= PM25_LIMIT and stretch.max() <= PM25_LIMIT:
                    assert any(_t(e["start"]) == st for e in mine if not e["required"]), (device_id, st)
    assert all(v > 0 for v in seen.values()), seen


def test_plumes_and_outage(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Open-burning spikes are required (big and long enough) at the burning stations; one
    station is offline for 1-3 h and sends nothing then."""
    result, truth = city
    plumes = [e for e in result.events if e["type"] == "pm25_spike" and e["info"]["source"] == "open_burning"]
    assert plumes and len({e["device_id"] for e in plumes}) <= 3
    for e in plumes:
        length = _t(e["end"]) - _t(e["start"])
        assert timedelta(hours=1) <= length <= timedelta(hours=3)
        assert e["required"] == (e["info"]["peak_excess_ugm3"] >= 25 and length >= timedelta(minutes=40))
    [off] = [e for e in result.events if e["type"] == "offline"]
    assert off["required"]
    s = truth[off["device_id"]]
    times = pd.DatetimeIndex(s.times)
    gap = np.asarray((times >= _t(off["start"])) & (times < _t(off["end"])))
    assert gap.sum() >= 12 and not s.sent[gap].any() and s.sent[~gap].all()


def test_small_city_and_bad_settings() -> None:
    """Two stations: no episode, no outage; bad air values are refused."""
    result, _ = run(n=2, days=2, burning_stations=1)
    assert not [e for e in result.events if e["type"] in ("pm25_episode", "offline")]
    assert run(n=0, days=1) == (AirResult([], [], [], []), {})
    with pytest.raises(ValueError, match="kappa_range"):
        run(n=2, days=1, kappa_range=[0.5, 0.3])
    with pytest.raises(ValueError, match="interval_s"):
        run(n=2, days=1, interval_s=0)
    with pytest.raises(ValueError, match="tz-aware"):
        simulate_air({}, KECAMATAN, 2, datetime(2026, 3, 2), 1, 1, TZ)


def test_truth_objects_are_json(city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """Events and lookalikes serialise as JSON with ISO-8601 UTC times."""
    result, _ = city
    json.dumps(result.events)
    json.dumps(result.lookalikes)
    for e in result.events:
        assert set(e) == {"type", "device_id", "start", "end", "required", "what", "info"}
        assert _t(e["start"]).utcoffset() == timedelta(0)
    for x in result.lookalikes:
        assert _t(x["at"]) <= _t(x["end"])


def test_plumes_that_began_within_the_hour_at_three_stations_are_an_episode_nobody_requires() -> None:
    """Three local plumes that begin within one hour at three stations meet pm25_episode's own
    definition (three stations rising together within the hour): the readings cannot tell them from
    regional haze, so the truth holds a ``required: false`` episode for them (an alert then is
    neither a hit nor a false alarm); two such plumes, or three spread over more than an hour, none."""
    clock = _Clock(datetime(2026, 3, 2, tzinfo=ZoneInfo("UTC")), ZoneInfo("Asia/Makassar"))
    h = 3600.0

    def pulse(t0_min: float, dur_h: float = 1.5) -> _Pulse:
        return _Pulse(t0_min * 60.0, 900.0, 1200.0, t0_min * 60.0 + dur_h * h, 80.0)

    together = {"A": [pulse(0)], "B": [pulse(20), pulse(600)], "C": [pulse(41, 2.0)], "D": [pulse(300)]}
    (ep,) = coincident_plumes(together, clock)
    assert ep["type"] == "pm25_episode" and ep["device_id"] == "city" and not ep["required"]
    assert ep["info"]["stations"] == ["A", "B", "C"]
    assert _t(ep["start"]) == clock.utc(41 * 60.0)
    assert _t(ep["end"]) == clock.utc(1.5 * h - 600.0)  # A's plume half down: two left
    assert coincident_plumes({"A": [pulse(0)], "B": [pulse(20)], "C": [pulse(70)]}, clock) == []
    assert coincident_plumes({"A": [pulse(0), pulse(30)], "B": [pulse(20)]}, clock) == []


def test_a_reference_monitor_reads_dry_pm_and_changes_nothing_else(
        city: tuple[AirResult, dict[str, StationTruth]]) -> None:
    """``reference_stations: 1``: the first station is a T640 (registry model ``T640``). Its readings
    are the true PM within the sensor's own +-4 % however humid the hour; every other station's
    readings, and every event and look-alike of the city, are those of the city without it."""
    result, truth = run(reference_stations=1)
    plain, plain_truth = city
    ref = truth["MKS-AIR-00"]
    assert [r["model"] for r in result.devices] == ["T640"] + ["LRG-PM1"] * (N - 1)
    assert ref.kappa == 0.0 and plain_truth["MKS-AIR-00"].kappa > 0.15
    humid = ref.rh_pct > 90
    assert humid.sum() > 50
    ratio = ref.reported_pm25[humid] / ref.true_pm25[humid]
    assert np.all(np.abs(ratio - 1) <= 0.04 + 0.05 / ref.true_pm25[humid])  # +-4 % and the 0.1 rounding
    assert np.median(plain_truth["MKS-AIR-00"].reported_pm25[humid] / ref.true_pm25[humid]) > 1.5
    assert np.array_equal(ref.true_pm25, plain_truth["MKS-AIR-00"].true_pm25)
    assert result.events == plain.events
    assert [x for x in result.lookalikes if x["device_id"] != "MKS-AIR-00" or x["type"] != "pm25_high"] \
        == [x for x in plain.lookalikes if x["device_id"] != "MKS-AIR-00" or x["type"] != "pm25_high"]
    others = [m for m in result.messages if b'"MKS-AIR-00"' not in m[2]]
    assert others == [m for m in plain.messages if b'"MKS-AIR-00"' not in m[2]]
    with pytest.raises(ValueError, match="reference_stations"):
        run(reference_stations=-1)
