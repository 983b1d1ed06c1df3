"""Scoring a replay's decisions against a hand-built truth (firmware_sim/SCENARIO.md, "Scoring"): pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics.cli import app
from analytics.score import NothingToScore, ScoreInputError, load, quantile, score, targets_met

S = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # scenario start; the default warm-up ends at H(24)
MIN = timedelta(minutes=1)


def H(h: float) -> datetime:
    """``h`` hours after the scenario's start."""
    return S + timedelta(hours=h)


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def event(type_: str, device: str, start: datetime, end: datetime | None, required: bool = True,
          **info: datetime) -> dict[str, Any]:
    return {"type": type_, "device_id": device, "start": iso(start), "end": iso(end), "required": required,
            "what": "", "info": {k: iso(v) for k, v in info.items()}}


def alert(n: int, type_: str, device: str, opened: datetime) -> dict[str, Any]:
    return {"id": n, "device_id": device, "type": type_, "severity": "major", "opened_at": iso(opened),
            "cleared_at": None, "clear_reason": None, "details": {}}


def truth() -> dict[str, Any]:
    return {
        "version": 1, "city": "test", "seed": 1, "days": 3, "start": iso(S), "end": iso(H(72)),
        "events": [
            event("bin_full", "B1", H(30), H(32)),                  # hit by a1, re-opened by a2
            event("bin_full", "B2", H(40), H(41)),                  # missed
            event("bin_full", "B3", H(10), H(12)),                  # warm-up; a3 opened in it too
            event("bin_full", "B3", H(20), H(26)),                  # warm-up event, a4 after the cut: ignored
            event("bin_full", "B4", H(50), H(52), required=False),  # a5 ignored
            event("bin_full", "B6", H(60), None),                   # open to the end: a7 10 min early, a hit
            event("bin_full_soon", "B1", H(25), H(30), cross_at=H(30)),
            event("bin_full_soon", "B2", H(35), H(40), cross_at=H(40)),
            event("fire", "B9", H(30), H(31)),                      # no alert: recall 0, precision "-"
        ],
        "lookalikes": [
            {"type": "bin_full", "device_id": "B5", "at": iso(H(44.5)), "what": "bag held over the sensor"},
            {"type": "bin_full", "device_id": "B5", "at": iso(H(10)), "what": "bag held over the sensor"},
            {"type": "fire", "device_id": "B1", "at": iso(H(50)), "what": "sun-heated bin"},
            {"type": "pickup", "device_id": "B5", "at": iso(H(33) + 10 * MIN), "what": "level drop after a bag"},
            {"type": "bin_full_soon", "device_id": "B1", "at": iso(H(27.5)), "what": "round reaches it 1.2 h early"},
            {"type": "bin_full_soon", "device_id": "B1", "at": iso(H(40)), "what": "round reaches it 3 h early"},
        ],
        "pickups": [
            {"device_id": "B1", "at": iso(H(32)), "level_before": 0.9, "level_after": 0.02, "partial": False,
             "required": True},
            {"device_id": "B2", "at": iso(H(41)), "required": True},
            {"device_id": "B3", "at": iso(H(26)), "required": False},
            {"device_id": "B4", "at": iso(H(52)), "required": True},
        ],
        "cycles": [
            {"device_id": "B1", "start": iso(H(26)), "end": iso(H(32)), "cross_at": iso(H(30))},
            {"device_id": "B7", "start": iso(H(20)), "end": None, "cross_at": iso(H(60))},
            {"device_id": "B8", "start": iso(H(30)), "end": iso(H(40)), "cross_at": None},
            {"device_id": "B9", "start": iso(H(0)), "end": iso(H(30)), "cross_at": iso(H(28))},
        ],
        "routes": {"policy": "fixed", "km": 512.3, "overflow_bin_hours": 40.5, "mean_fill_at_emptying": 0.61,
                   "stops": 1000},
    }


def forecast(device: str, now: datetime, full_at: datetime | None) -> dict[str, Any]:
    return {"device_id": device, "now": iso(now), "full_at": iso(full_at), "level": 0.5, "expected_pickup": None}


def decisions() -> dict[str, Any]:
    return {
        "version": 1, "from": iso(S), "to": iso(H(72)), "step_s": 600, "steps": 433, "seconds": 1.0,
        "alerts": [
            alert(1, "bin_full", "B1", H(30) + 20 * MIN),
            alert(2, "bin_full", "B1", H(31)),
            alert(3, "bin_full", "B3", H(10) + 10 * MIN),
            alert(4, "bin_full", "B3", H(25)),
            alert(5, "bin_full", "B4", H(50) + 5 * MIN),
            alert(6, "bin_full", "B5", H(45)),
            alert(7, "bin_full", "B6", H(60) - 10 * MIN),
            alert(8, "bin_full_soon", "B1", H(27)),
            alert(9, "bin_full_soon", "B2", H(39)),
        ],
        "pickups": [
            {"device_id": "B1", "at": iso(H(32) + 5 * MIN), "level_before": 0.9, "level_after": 0.02},
            {"device_id": "B2", "at": iso(H(41) - 20 * MIN)},
            {"device_id": "B3", "at": iso(H(26) + 10 * MIN)},  # matches a required=false pickup: ignored
            {"device_id": "B5", "at": iso(H(33))},             # no truth pickup: false
            {"device_id": "B1", "at": iso(H(32) + 10 * MIN)},  # B1's truth pickup is taken: false
        ],
        "forecasts": [
            forecast("B1", H(28), H(30.5)),        # horizon 2 h, error 0.5 h
            forecast("B1", H(27), H(31)),          # horizon 3 h, error 1 h
            forecast("B1", H(29.5), None),         # horizon 0.5 h: no bucket
            forecast("B1", H(28.5), None),         # horizon 1.5 h, no full_at: missing
            forecast("B1", H(25), H(30)),          # before the cycle
            forecast("B7", H(40), H(58)),          # horizon 20 h, error 2 h
            forecast("B7", H(44), H(63)),          # horizon 16 h, error 3 h
            forecast("B7", H(30), H(60)),          # horizon 30 h: no bucket
            forecast("B7", H(50), H(57)),          # horizon 10 h, error 3 h
            forecast("B8", H(35), H(36)),          # no crossing in the cycle
            forecast("B9", H(23), H(29)),          # horizon 5 h, error 1 h, but in the warm-up
        ],
        "idempotency": {"checked": 433, "changed": [{"now": iso(H(30)), "what": "opened bin_full x1"}]},
    }


def test_alerts_per_type() -> None:
    r = score(truth(), decisions())
    by = {d.type: d for d in r.decisions}
    assert list(by) == ["bin_full", "bin_full_soon", "fire"]
    full = by["bin_full"]
    assert (full.required, full.not_required, full.warmup_events) == (3, 1, 2)
    assert (full.alerts, full.hits, full.false_alarms, full.reopens, full.ignored, full.misses) == (6, 2, 1, 1, 2, 1)
    assert full.precision == 0.5 and full.recall == pytest.approx(2 / 3) and full.f1 == pytest.approx(4 / 7)
    assert (full.timing, full.timing_p50_min, full.timing_p90_min) == ("delay", 5.0, 17.0)  # delays 20, -10

    soon = by["bin_full_soon"]
    assert (soon.hits, soon.false_alarms, soon.misses, soon.precision, soon.recall) == (2, 0, 0, 1.0, 1.0)
    assert (soon.timing, soon.timing_p50_min, soon.timing_p90_min) == ("lead", 120.0, 168.0)  # leads 180, 60

    fire = by["fire"]
    assert (fire.required, fire.alerts, fire.misses, fire.precision, fire.recall, fire.f1) == (1, 0, 1, None, 0.0,
                                                                                              None)


def test_warmup_zero_counts_everything() -> None:
    full = next(d for d in score(truth(), decisions(), warmup_h=0).decisions if d.type == "bin_full")
    assert (full.required, full.warmup_events, full.alerts) == (5, 0, 7)
    assert (full.hits, full.false_alarms, full.reopens, full.ignored, full.misses) == (4, 1, 1, 1, 1)


def test_pickups() -> None:
    p = score(truth(), decisions()).pickups
    assert (p.truth, p.required, p.decisions) == (4, 3, 5)
    assert (p.hits, p.false, p.ignored, p.misses) == (2, 2, 1, 1)
    assert p.precision == 0.5 and p.recall == pytest.approx(2 / 3) and p.offset_p50_min == 12.5


def test_time_to_full_buckets() -> None:
    ttf = {b.bucket: (b.n, b.median_h, b.p90_h, b.n_missing) for b in score(truth(), decisions()).ttf}
    assert ttf == {"1-3": (1, 0.5, 0.5, 1), "3-6": (1, 1.0, 1.0, 0), "6-12": (1, 3.0, 3.0, 0),
                   "12-24": (2, 2.5, 2.9, 0)}
    assert {b.bucket: b.n for b in score(truth(), decisions(), warmup_h=0).ttf}["3-6"] == 2


def test_lookalikes_routes_idempotency() -> None:
    r = score(truth(), decisions())
    assert [(lk.type, lk.what, lk.n, lk.fooled) for lk in r.lookalikes] == [
        ("bin_full", "bag held over the sensor", 1, 1), ("bin_full_soon", "round reaches it # h early", 2, 1),
        ("fire", "sun-heated bin", 1, 0), ("pickup", "level drop after a bag", 1, 1)]
    assert r.routes["km"] == 512.3
    assert (r.idempotency_checked, r.idempotency_changed) == (433, 1)


def test_targets() -> None:
    assert targets_met(score(truth(), decisions())) == [
        "bin_full precision 0.500 < 0.98",
        "bin_full recall 0.667 < 0.99",
        "fire recall 0.000 < 0.95",
        "pickups precision 0.500 < 0.98",
        "pickups recall 0.667 < 0.98",
        "time to full 6-12 h median error 3.00 h > 1.5 h",
        "idempotency: 1 repeated runs changed something",
    ]
    perfect = {**decisions(), "alerts": [alert(1, "bin_full_soon", "B1", H(27))],
               "pickups": [{"device_id": "B1", "at": iso(H(32))}],
               "forecasts": [forecast("B1", H(28), H(30.5))], "idempotency": {"checked": 10, "changed": []}}
    small = {**truth(), "events": [event("bin_full_soon", "B1", H(25), H(30), cross_at=H(30))],
             "pickups": [{"device_id": "B1", "at": iso(H(32)), "required": True}]}
    assert targets_met(score(small, perfect)) == []


def test_quantile() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0], 0.9) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([4.0, 1.0, 2.0, 3.0], 0.9) == pytest.approx(3.7)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ScoreInputError, match="not a JSON object"):
        (tmp_path / "a.json").write_text("[]")
        load(tmp_path / "a.json")
    with pytest.raises(ScoreInputError, match="version 2, expected 1"):
        (tmp_path / "b.json").write_text('{"version": 2}')
        load(tmp_path / "b.json")
    with pytest.raises(ScoreInputError, match="no offset"):
        score({**truth(), "start": "2026-03-01T16:00:00"}, decisions())


def test_a_wrong_file_is_named_with_what_it_should_be(tmp_path: Path) -> None:
    """Tried as a new user: ``--truth city/messages.jsonl`` said ``Extra data: line 2 column 1 (char
    542)``, ``--decisions city.json`` said ``version None, expected 1``: parser words, not what to give."""
    truth_file = "the truth.json `lorong sim scenario --out DIR` writes"
    (tmp_path / "messages.jsonl").write_text('{"t": 1}\n{"t": 2}\n')
    (tmp_path / "city.json").write_text('{"name": "small"}')
    (tmp_path / "README.md").write_text("# Lorong\n")
    with pytest.raises(ScoreInputError, match=r"messages.jsonl is not one JSON document \(Extra data, line 2\); give "
                                              "the truth.json"):
        load(tmp_path / "messages.jsonl", truth_file)
    with pytest.raises(ScoreInputError, match=r'city.json has no "version": it is not the truth.json'):
        load(tmp_path / "city.json", truth_file)
    with pytest.raises(ScoreInputError, match=r"README.md is not one JSON document \(Expecting value, line 1\)"):
        load(tmp_path / "README.md", truth_file)
    with pytest.raises(ScoreInputError, match=r"nope.json: no such file; give the truth.json"):
        load(tmp_path / "nope.json", truth_file)
    result = CliRunner().invoke(app, ["score", "--truth", str(tmp_path / "messages.jsonl"),
                                      "--decisions", str(tmp_path / "city.json")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "give the truth.json `lorong sim scenario --out DIR` writes" in result.output


def test_decisions_of_another_scenario_are_refused() -> None:
    """Decisions of March 1-3 scored against a truth of March 8-10 gave recall 0 everywhere and exit 0: a
    replay that does not overlap the scenario after its warm-up is another scenario's."""
    elsewhere = {**decisions(), "from": iso(H(24 * 7)), "to": iso(H(24 * 9))}
    with pytest.raises(ScoreInputError, match=r"the decisions cover .* not the scenario's"):
        score(truth(), elsewhere)
    score(truth(), {k: v for k, v in decisions().items() if k not in ("from", "to")})  # older files: no check



def test_decisions_of_another_seed_of_the_same_city_are_refused() -> None:
    """Two seeds of one city cover the same days: the replay records the scenario it replayed (from
    ``--truth``), and score refuses another's truth; decisions without it (older files, --from/--to) are
    scored as before."""
    t = {**truth(), "seed": 1}
    with pytest.raises(ScoreInputError, match=r"decisions of test seed 2, the truth of test seed 1"):
        score(t, {**decisions(), "scenario": {"city": "test", "seed": 2}})
    score(t, {**decisions(), "scenario": {"city": "test", "seed": 1}})
    score(t, decisions())


def test_files_given_the_wrong_way_round_are_refused() -> None:
    """A truth given as the decisions (or decisions as the truth) printed a table of recall 0 and
    "31 false" pickups, exit 0: each file is checked for what it must hold."""
    with pytest.raises(ScoreInputError, match=r"--decisions: .*a scenario's truth"):
        score(truth(), truth())
    with pytest.raises(ScoreInputError, match=r"--truth: .*decisions"):
        score(decisions(), decisions())


def test_cli_table_json_and_errors(tmp_path: Path) -> None:
    (tmp_path / "truth.json").write_text(json.dumps(truth()))
    (tmp_path / "decisions.json").write_text(json.dumps(decisions()))
    runner = CliRunner()
    res = runner.invoke(app, ["score", "--truth", str(tmp_path), "--decisions", str(tmp_path / "decisions.json")])
    assert res.exit_code == 0, res.output
    assert "bin_full_soon" in res.output and "120 (lead)" in res.output
    assert "pickups: precision 0.500, recall 0.667" in res.output
    assert "idempotency: 1 of 433 repeated runs changed something" in res.output
    assert "bin_full precision 0.500 < 0.98" in res.output

    res = runner.invoke(app, ["score", "--truth", str(tmp_path / "truth.json"), "--decisions",
                              str(tmp_path / "decisions.json"), "--json", "--warmup-h", "0"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["warmup_h"] == 0 and doc["idempotency"] == {"checked": 433, "changed": 1}
    assert next(d for d in doc["decisions"] if d["type"] == "bin_full")["hits"] == 4
    assert doc["ttf"][3] == {"bucket": "12-24", "n": 2, "median_h": 2.5, "p90_h": 2.9, "n_missing": 0}

    (tmp_path / "bad.json").write_text("{")
    res = runner.invoke(app, ["score", "--truth", str(tmp_path), "--decisions", str(tmp_path / "bad.json")])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {tmp_path / 'bad.json'} is not one JSON document (")
    res = runner.invoke(app, ["score", "--truth", str(tmp_path / "none.json"), "--decisions", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.startswith("error: ")


def test_a_scenario_inside_the_warm_up_has_nothing_to_score(tmp_path: Path) -> None:
    """A 12 h scenario under the 24 h warm-up left every event out, and the report said "targets: all
    met"; it says there is nothing to score instead (exit 2), in tables and in JSON."""
    short = {**truth(), "end": iso(H(12)), "events": [event("bin_full", "B1", H(2), H(5))]}
    (tmp_path / "truth.json").write_text(json.dumps(short))
    (tmp_path / "decisions.json").write_text(json.dumps(decisions()))
    with pytest.raises(NothingToScore, match="the scenario runs 12 h, all of it inside the 24 h warm-up"):
        score(short, decisions())
    for extra in ([], ["--json"]):
        res = CliRunner().invoke(app, ["score", "--truth", str(tmp_path), "--decisions",
                                       str(tmp_path / "decisions.json"), *extra])
        assert res.exit_code == 2, res.output
        assert "all met" not in res.output
        assert res.stderr == ("error: nothing to score: the scenario runs 12 h, all of it inside the 24 h warm-up; "
                              "score a longer scenario, or pass a smaller --warmup-h\n")
    assert score(short, decisions(), warmup_h=1).decisions  # with a shorter warm-up it scores


def test_an_alert_from_when_the_sensor_cannot_tell_the_level_from_the_line_is_on_time() -> None:
    # B1's true level came within the sensor's accuracy of the threshold at H(27) and crossed at H(30):
    # an alert opened at H(28) is a hit (early, by the readings the sensor could send), one opened at
    # H(26.5) is still early by more than the tolerance: a false alarm
    t = truth()
    t["events"] = [event("bin_full", "B1", H(30), H(32), match_from=H(27)),
                   event("bin_full", "B2", H(40), H(41), match_from=H(38))]
    d = decisions()
    d["alerts"] = [alert(1, "bin_full", "B1", H(28)), alert(2, "bin_full", "B2", H(37.5))]
    full = next(x for x in score(t, d).decisions if x.type == "bin_full")
    assert (full.hits, full.false_alarms, full.misses) == (1, 1, 1)
    assert full.timing_p50_min == -120.0  # open - start: two hours before the true crossing


def test_a_city_wide_alert_of_the_scenarios_city_matches_the_truths_city() -> None:
    """A scenario loaded as its own registry city runs per city: its city-wide alerts are on
    ``city:<id>`` (the scenario's name), the truth's on ``city``; another city's are not its own."""
    t = {"version": 1, "city": "Banyuwangi-like", "start": iso(S), "end": iso(H(72)),
         "events": [event("pm25_episode", "city", H(30), H(34)), event("pm25_episode", "city", H(50), H(54))]}
    d = {"alerts": [alert(1, "pm25_episode", "city:banyuwangi-like", H(30) + 5 * MIN),
                    alert(2, "pm25_episode", "city:makassar", H(50) + 5 * MIN)]}
    (ep,) = score(t, d).decisions
    assert (ep.hits, ep.false_alarms, ep.misses) == (1, 1, 1)


def test_an_event_whose_match_window_opens_in_the_warm_up_is_a_warm_up_event() -> None:
    """banyuwangi-like seed 23: a bin stood within the sensor's accuracy of 0.8 from 07:29 (its
    ``match_from``, in the warm-up), Lorong opened ``bin_full`` at 13:50 (in the warm-up, a
    detection its readings allow) and kept it open past the true crossing at 21:29, just after the
    warm-up. Alerts opened in the warm-up are not scored, so the event counted as missed: recall
    0.96 for an alert the crew had in hand. Its window began in the warm-up: it is a warm-up event,
    like one that starts there."""
    t = {"version": 1, "city": "test", "seed": 1, "days": 3, "start": iso(S), "end": iso(H(72)),
         "events": [event("bin_full", "B1", H(28.5), H(31), match_from=H(14.5)),  # alert a1 in the warm-up
                    event("bin_full", "B2", H(30), H(32), match_from=H(29))],       # a2 after the cut: a hit
         "lookalikes": [], "pickups": [], "cycles": []}
    d = {"version": 1, "from": iso(S), "to": iso(H(72)), "step_s": 600,
         "alerts": [alert(1, "bin_full", "B1", H(20.8)), alert(2, "bin_full", "B2", H(29.5))],
         "pickups": [], "forecasts": []}
    full = next(x for x in score(t, d).decisions if x.type == "bin_full")
    assert (full.required, full.warmup_events, full.hits, full.misses, full.false_alarms) == (1, 1, 1, 0, 0)
    assert full.recall == 1.0
