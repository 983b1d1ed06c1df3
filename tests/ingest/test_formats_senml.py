"""SenML resolution (RFC 8428 section 4.6) against the RFC's own examples and their resolved forms.

The oracle is tests/data/senml-spec (core-wg/senml-spec): ``exN.gen.json`` and
``exN.gen.resolved.json``. Records without a time resolve to the generation "now" of the
oracle, which is passed as the receive time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.formats import senml
from lorong.core.errors import ParseError

SPEC = Path(__file__).resolve().parents[1] / "data" / "senml-spec"
EXAMPLES = sorted(SPEC.glob("ex*.gen.json"), key=lambda p: int(p.name[2:].split(".")[0]))
NOW_S = 1.498780179e09
"""The oracle's generation time ("now" of records without time)."""
NOW_S_EX7 = 1.499109309e09
"""ex7 was generated on another day."""


def _now(example: Path) -> float:
    return NOW_S_EX7 if example.name.startswith("ex7.") else NOW_S


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.name != "ex13.gen.json"], ids=lambda p: p.name)
def test_resolution_matches_the_rfc_oracle(example: Path) -> None:
    pack = json.loads(example.read_text())
    expected = json.loads(example.with_name(example.name.replace(".gen.", ".gen.resolved.")).read_text())
    got = senml.resolve(pack, _now(example))
    if example.name == "ex7.gen.json":
        # the oracle's generator leaves out the data-value (vd) record; RFC 8428 section 4.6 keeps it
        assert got[-1] == {"n": "urn:dev:ow:10e2073a01080063:nfv-reader", "t": NOW_S_EX7, "vd": "aGkgCg"}
        got = got[:-1]
    assert got == expected


def test_every_example_has_been_used() -> None:
    assert len(EXAMPLES) == 13
    assert len(list(SPEC.glob("ex*.gen.resolved.json"))) == 12


def test_ex13_relative_time_after_base_time() -> None:
    """ex13 has no resolved form in the oracle: t=0.1 is added to the base time (absolute)."""
    got = senml.resolve(json.loads((SPEC / "ex13.gen.json").read_text()), NOW_S)
    assert [(r["n"], r["t"], r["v"], r["u"]) for r in got] == [
        ("2001:db8::3", 1320078429.0, 0.5, "/"), ("2001:db8::4", 1320078429.0, 0.5, "/"),
        ("2001:db8::3", 1320078429.1, 0.0, "/"), ("2001:db8::4", 1320078429.1, 0.0, "/")]


def test_relative_times_count_from_receive_time() -> None:
    pack = [{"n": "MKS-AIR-07/pm25", "u": "ug/m3", "v": 10, "t": -120}, {"n": "MKS-AIR-07/pm25", "v": 11}]
    got = senml.resolve(pack, 1_772_323_200.0)
    assert [r["t"] for r in got] == [1_772_323_080.0, 1_772_323_200.0]


def test_relative_limit_is_two_to_the_28() -> None:
    below = senml.resolve([{"n": "x", "v": 1, "t": 2**28 - 1}], 1000.0)
    at = senml.resolve([{"n": "x", "v": 1, "t": 2**28}], 1000.0)
    assert below[0]["t"] == 2**28 - 1 + 1000.0
    assert at[0]["t"] == 2**28


def test_base_fields_carry_forward_and_are_overridden() -> None:
    pack = [{"bn": "a/", "bu": "Cel", "n": "temperature", "v": 20, "bt": 1.7e9},
            {"bn": "b/", "n": "temperature", "v": 21},
            {"bu": "%RH", "n": "humidity", "v": 50, "u": "%"}]
    got = senml.resolve(pack, NOW_S)
    assert [(r["n"], r["u"], r["t"]) for r in got] == [
        ("a/temperature", "Cel", 1.7e9), ("b/temperature", "Cel", 1.7e9), ("b/humidity", "%", 1.7e9)]


def test_sum_and_base_sum() -> None:
    got = senml.resolve([{"bn": "m/", "bs": 100, "n": "energy", "s": 5}, {"n": "energy"}], NOW_S)
    assert [r.get("s") for r in got] == [105.0, 100.0]


@pytest.mark.parametrize(("pack", "detail"), [
    ({"n": "x", "v": 1}, "non-empty JSON array"),
    ([], "non-empty JSON array"),
    ([1], "record 0 is not an object"),
    ([{"n": "x", "v": True}], "'v' must be a number"),
    ([{"n": "x", "vb": 1}], "'vb' must be true or false"),
    ([{"n": 5, "v": 1}], "'n' must be a string"),
    ([{"n": "x", "v": 1, "foo_": 1}], "must-understand"),
    ([{"bver": 11, "n": "x", "v": 1}], "bver"),
    ([{"bver": True, "n": "x", "v": 1}], "bver"),
    ([{"n": "x", "v": 1, "vs": "1"}], "more than one"),
    ([{"n": "-x", "v": 1}], "4.5.1"),
    ([{"v": 1}], "4.5.1"),
    ([{"n": "urn:dev:ow:", "v": 1}], None),
])
def test_invalid_packs(pack: object, detail: str | None) -> None:
    payload = json.dumps(pack).encode()
    with pytest.raises(ParseError) as err:
        senml.parse(payload, "senml/MKS-AIR-07", datetime(2026, 3, 1, tzinfo=UTC))
    assert err.value.reason == "bad_envelope"
    if detail:
        assert detail in err.value.detail


@pytest.mark.parametrize(("name", "device", "metric"), [
    ("urn:dev:ow:10e2073a01080063:temp", "10E2073A01080063", "temperature"),
    ("urn:dev:ow:10e2073a01080063", "10E2073A01080063", "temperature"),  # metric from the unit Cel
    ("urn:dev:mac:0024befffe804ff1:temperature", "0024BEFFFE804FF1", "temperature"),
    ("urn:dev:os:32473-123456:temp", "32473-123456", "temperature"),
    ("MKS-AIR-07/temperature", "MKS-AIR-07", "temperature"),
    ("MKS-AIR-07/temperature_2", "MKS-AIR-07", "temperature"),
    ("MKS-AIR-07", "MKS-AIR-07", "temperature"),  # the topic's device, metric from the unit
    ("air_temperature", "MKS-AIR-07", "temperature"),  # a metric of the topic's device
])
def test_device_and_metric_naming_convention(name: str, device: str, metric: str) -> None:
    payload = json.dumps([{"n": name, "u": "Cel", "v": 30.5, "t": 1.77e9}]).encode()
    (up,) = senml.parse(payload, "senml/MKS-AIR-07", datetime(2026, 3, 1, tzinfo=UTC))
    assert up.device_id == device
    assert [(r.metric, r.value, r.unit) for r in up.readings] == [(metric, 30.5, "degC")]


@pytest.mark.parametrize(("unit", "metric", "lorong_unit"), [
    ("Cel", "temperature", "degC"), ("K", "temperature", "K"), ("%RH", "relativeHumidity", "%"),
    ("%EL", "batteryLevel", "%"), ("Pa", "pressure", "Pa"), ("hPa", "pressure", "hPa"),
    ("ppm", "co2", "ppm"), ("lx", "illuminance", "lx"), ("dBm", "rssi", "dBm"),
])
def test_metric_from_unit(unit: str, metric: str, lorong_unit: str) -> None:
    payload = json.dumps([{"n": "MKS-AIR-07", "u": unit, "v": 1.0, "t": 1.77e9}]).encode()
    (up,) = senml.parse(payload, "senml/MKS-AIR-07", datetime(2026, 3, 1, tzinfo=UTC))
    assert [(r.metric, r.unit) for r in up.readings] == [(metric, lorong_unit)]


def test_units_without_a_metric_are_skipped() -> None:
    payload = json.dumps([{"bn": "MKS-AIR-07", "bt": 1.77e9, "u": "lat", "v": -5.14},
                          {"u": "lon", "v": 119.42}, {"u": "Cel", "v": 30}]).encode()
    (up,) = senml.parse(payload, "senml/MKS-AIR-07", datetime(2026, 3, 1, tzinfo=UTC))
    assert [r.metric for r in up.readings] == ["temperature"]


def test_boolean_value_of_a_flag_metric() -> None:
    payload = json.dumps([{"bn": "MKS-BIN-0001/", "bt": 1.77e9, "n": "lidOpen", "vb": True},
                          {"n": "label", "vs": "Jl. Somba Opu"}]).encode()
    (up,) = senml.parse(payload, "senml/MKS-BIN-0001", datetime(2026, 3, 1, tzinfo=UTC))
    assert [(r.metric, r.value) for r in up.readings] == [("lidOpen", 1.0)]


def test_device_without_values_is_left_out_of_a_multi_device_pack() -> None:
    payload = json.dumps([{"bn": "A/", "bt": 1.77e9, "n": "temperature", "u": "Cel", "v": 30},
                          {"bn": "B/", "n": "label", "vs": "x"}]).encode()
    ups = senml.parse(payload, "senml/gw", datetime(2026, 3, 1, tzinfo=UTC))
    assert [u.device_id for u in ups] == ["A"]


def test_one_value_per_metric_and_time() -> None:
    payload = json.dumps([{"bn": "A/", "bt": 1.77e9, "n": "temperature_3", "u": "Cel", "v": 3.4},
                          {"n": "temperature_2", "u": "Cel", "v": 4.2},
                          {"n": "temperature_2", "u": "Cel", "v": 4.3, "t": 60}]).encode()
    (up,) = senml.parse(payload, "senml/A", datetime(2026, 3, 1, tzinfo=UTC))
    assert [(r.value, r.ts.timestamp() if r.ts else None) for r in up.readings] == [(3.4, 1.77e9), (4.3, 1.77e9 + 60)]
