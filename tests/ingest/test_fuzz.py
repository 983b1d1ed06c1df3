"""Malformed payloads: nothing escapes, every message is accounted for.

1. 5,000 generated payloads (1,000 per format; hypothesis, derandomized, so the same 5,000 every
   run) go through :meth:`Pipeline.process`: structure-aware mutations of real payloads (a value
   replaced by any JSON, a key deleted or added, edge numbers, random frame bytes for the codecs),
   truncations, byte flips, random bytes and wrong topics. No exception escapes, no parser or
   codec bug surfaces as ``internal_error``, and each message is exactly one of accepted (with
   points), rejected (with a reason) or duplicate: received == accepted + rejected + duplicates.
2. Over real mosquitto + ingester + influxd: a few hundred malformed and valid messages; received
   == stored + dead-lettered, counted in InfluxDB and in the dead-letter table.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from ingest.formats import FORMATS, TOPICS
from ingest.pipeline import Pipeline, Result
from lorong.core.model import DeviceInfo, DeviceKind, Message
from tests.conftest import DATA

RX = datetime(2026, 3, 1, tzinfo=UTC)
TB = DATA / "thingsboard-data-converters/VENDORS"


def _load(path: str) -> Any:
    return json.loads((DATA / path).read_text())


_EM310_TB = _load("thingsboard-data-converters/VENDORS/Milesight/EM310-UDL/ChirpStack/uplink/payload.json")
_DOCS_UP = _load("chirpstack-docs/event_up.json")
_TTS = _load("kotori/test_tts_ttn_full.json")
_TTS_RAW = copy.deepcopy(_TTS)
_TTS_RAW["end_device_ids"]["dev_eui"] = "24E124713B0000A1"
_TTS_RAW["uplink_message"].pop("decoded_payload")
_TTS_RAW["uplink_message"].update(f_port=85, frm_payload=_EM310_TB["data"])

TEMPLATES: dict[str, list[tuple[str, Any]]] = {
    "lorong-json": [("lorong/v1/MKS-BIN-0001/up", {
        "device_id": "MKS-BIN-0001", "time": "2026-02-28T18:00:00+08:00", "seq": 42,
        "metrics": {"distance": {"value": 57.5, "unit": "cm"}, "batteryLevel": {"value": 93, "unit": "%"},
                    "temperature": 31.5}})],
    "ttn-v3": [("v3/acme@ttn/devices/foo-bar-baz/up", _TTS), ("v3/acme@ttn/devices/foo-bar-baz/up", _TTS_RAW)],
    "chirpstack-v4": [
        ("application/ca739e26/device/1000000000000001/event/up", _EM310_TB),
        ("application/17c82e96/device/0101010101010101/event/up",
         {**_DOCS_UP, "fCnt": 7, "object": {"battery": 92, "distance": 1234, "position": "normal"}}),
    ],
    "senml": [("senml/MKS-AIR-07", [
        {"bn": "MKS-AIR-07/", "n": "temperature", "u": "Cel", "v": 31.2, "t": -60},
        {"n": "humidity", "u": "%RH", "v": 78, "t": -60}, {"n": "pressure", "u": "Pa", "v": 100870},
        {"n": "pm25", "u": "ug/m3", "v": 41.5}])],
    "airrohr": [("airrohr/bridge", _load("bashair/measurement.json")),
                ("airrohr/kotori", _load("kotori/airrohr.json"))],
}

DEVICES = {d.device_id: d for d in (
    DeviceInfo("MKS-BIN-0001", DeviceKind.BIN, kecamatan="Wajo", bin_depth_mm=1000.0, blind_zone_mm=150.0),
    DeviceInfo("030E202BD5504B52", DeviceKind.AIR, kecamatan="Tallo"),
    DeviceInfo("24E124713B0000A1", DeviceKind.BIN, "milesight-em310-udl", "Tallo", 2500.0, 200.0),
    DeviceInfo("1000000000000001", DeviceKind.BIN, "milesight-em310-udl", "Tallo", 2500.0, 200.0),
    DeviceInfo("0101010101010101", DeviceKind.BIN, "dragino-ldds75", "Wajo", 2500.0, 200.0),
    DeviceInfo("MKS-AIR-07", DeviceKind.AIR, kecamatan="Mariso"),
    DeviceInfo("esp8266-11545355", DeviceKind.AIR, kecamatan="Panakkukang"),
    DeviceInfo("esp8266-12041741", DeviceKind.AIR, kecamatan="Panakkukang"),
)}

ALL_TOPICS = [t for ts in TEMPLATES.values() for t, _ in ts] + [f.replace("+", "x") for fs in TOPICS.values()
                                                                  for f in fs]

_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
         | st.sampled_from([1e308, -1e308, 10**30, -200, 999.9, 1999.9, 0, -1, 2**28, "No Sensor", "", "1e999",
                            "2026-03-01T00:00:00Z", "1976-10-19T13:08:53Z", "3000-01-01T00:00:00+00:00"]))
JSON = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=8)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@st.composite
def malformed(draw: st.DrawFn, fmt: str) -> tuple[str, bytes]:
    """A (topic, payload) derived from a real payload of ``fmt`` by one or two mutations."""
    topic, template = draw(st.sampled_from(TEMPLATES[fmt]))
    kind = draw(st.sampled_from(["replace"] * 5 + ["delete"] * 2 + ["insert", "frame", "frame", "truncate", "flip",
                                                                   "bytes", "json"]))
    obj = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 2))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths[1:] or paths))  # the root is the "json" kind's job
        if kind == "replace":
            obj = _set(obj, path, draw(JSON))
        elif kind == "delete" and path:
            obj = _set(obj, path, None, delete=True)
        elif kind == "insert":
            target = draw(st.sampled_from([p for p in paths if isinstance(_get(obj, p), dict)] or [()]))
            if isinstance(_get(obj, target), dict):
                _get(obj, target)[draw(st.text(max_size=12))] = draw(JSON)
        elif kind == "frame":
            frame = base64.b64encode(draw(st.binary(max_size=40))).decode()
            for key in ("data", "frm_payload"):
                holder = obj.get("uplink_message", obj) if isinstance(obj, dict) else None
                if isinstance(holder, dict) and key in holder:
                    holder[key] = frame
    if draw(st.booleans()):  # a new frame counter, so that not every variant is a duplicate of the last
        for holder in (obj, obj.get("uplink_message") if isinstance(obj, dict) else None):
            for key in ("seq", "fCnt", "f_cnt"):
                if isinstance(holder, dict) and key in holder:
                    holder[key] = draw(st.integers(0, 2**32))
    payload = json.dumps(obj).encode()
    if kind == "truncate":
        payload = payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
    elif kind == "flip":
        data = bytearray(payload)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        payload = bytes(data)
    elif kind == "bytes":
        payload = draw(st.binary(max_size=200))
    elif kind == "json":
        payload = json.dumps(draw(JSON)).encode()
    which = draw(st.integers(0, 19))  # mostly the right topic, sometimes another format's, rarely noise
    if which == 18:
        topic = draw(st.sampled_from(ALL_TOPICS))
    elif which == 19:
        topic = draw(st.text(max_size=30))
    return topic, payload


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def outcome(result: Result) -> str:
    """accepted / rejected / duplicate / empty; fails on a message that is none (or several) of them."""
    if result.empty:  # a zero-byte payload (a retained message cleared): nothing stored, nothing wrong
        assert result.error is None and not result.lines
        return "empty"
    if result.error is not None:
        assert result.error.reason and result.error.reason != "internal_error", result.error
        assert not result.lines
        return "rejected"
    if result.duplicate and not result.lines:
        return "duplicate"
    assert result.readings and result.lines, "a message neither stored, rejected nor duplicate"
    return "accepted"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_malformed_payloads_are_accounted_for(fmt: str) -> None:
    pipeline = Pipeline(DEVICES, max_payload_bytes=4096)
    counts: Counter[str] = Counter()

    @settings(max_examples=1000, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(malformed(fmt))
    def run(message: tuple[str, bytes]) -> None:
        topic, payload = message
        counts["received"] += 1
        counts[outcome(pipeline.process(Message(topic, payload, RX)))] += 1

    run()
    assert counts["received"] == 1000
    assert counts["received"] == counts["accepted"] + counts["rejected"] + counts["duplicate"] + counts["empty"]
    assert counts["rejected"] > counts["accepted"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_templates_are_valid(fmt: str) -> None:
    """The unmutated templates are accepted, so mutations start from real, valid messages."""
    pipeline = Pipeline(DEVICES)
    for topic, body in TEMPLATES[fmt]:
        result = pipeline.process(Message(topic, json.dumps(body).encode(), RX))
        assert result.error is None and result.lines, (topic, result.error)


# ---------------------------------------------------------------- real broker, ingester, influxd

CORRUPTIONS = ("truncate", "not_json", "bytes", "unknown_device", "wrong_type", "sentinel", "too_old", "topic")


def _corrupt(rng: random.Random, kind: str, topic: str, body: list[dict[str, Any]]) -> tuple[str, bytes]:
    """A message of ``kind`` that must be rejected (every kind is rejected by construction)."""
    text = json.dumps(body)
    if kind == "truncate":
        return topic, text[: rng.randrange(1, len(text) - 1)].encode()
    if kind == "not_json":
        return topic, rng.choice([b" ", b"null", b"[]", b"42", b'"x"', b"{'a': 1}", b"\xff\xfe"])
    if kind == "bytes":
        return topic, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\x00{"
    if kind == "unknown_device":
        return topic.replace("MKS-AIR-", "MKS-AIR-X"), text.replace("MKS-AIR-", "MKS-AIR-X").encode()
    if kind == "wrong_type":
        return topic, json.dumps([{**body[0], "v": str(body[0]["v"])}]).encode()
    if kind == "sentinel":
        return topic, json.dumps([{**body[0], "v": rng.choice([999.9, 1999.9, -200])}]).encode()
    if kind == "too_old":
        return topic, json.dumps([{**body[0], "t": 1.5e9 + rng.randrange(10**6)}]).encode()
    return topic.replace("senml/", "lorong/v1/") + "/up", text.encode()  # another format's topic


@pytest.mark.integration
def test_malformed_and_valid_over_mqtt(make_settings: Any, mosquitto: Any, influx: Any,
                                       sessions: sessionmaker[Session]) -> None:
    from devices.registry import DeviceIn, RegistryLookup, add_device
    from firmware_sim.publisher import Publisher
    from ingest.deadletter import DeadLetterStore
    from ingest.service import Ingester

    rng = random.Random(20260301)
    stations = [f"MKS-AIR-{i:02d}" for i in range(1, 11)]
    with sessions.begin() as s:
        for dev in stations:
            add_device(s, DeviceIn(id=dev, kind="air", kecamatan="Makassar"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    valid: list[tuple[str, bytes]] = []
    for i in range(100):  # one point per message: a distinct (station, second)
        dev = stations[i % len(stations)]
        ts = (start + timedelta(seconds=60 * i)).timestamp()
        valid.append((f"senml/{dev}", json.dumps([{"bn": f"{dev}/", "n": "pm25", "u": "ug/m3",
                                                   "v": round(rng.uniform(5, 150), 1), "t": ts}]).encode()))
    bad: list[tuple[str, bytes]] = []
    for i in range(300):
        dev = stations[i % len(stations)]
        body = [{"bn": f"{dev}/", "n": "pm25", "u": "ug/m3", "v": 20.5, "t": start.timestamp()}]
        bad.append(_corrupt(rng, CORRUPTIONS[i % len(CORRUPTIONS)], f"senml/{dev}", body))
    messages = valid + bad
    rng.shuffle(messages)

    settings = make_settings(mqtt_port=mosquitto.port, influx=influx)
    dead = DeadLetterStore(sessions)
    ingester = Ingester(settings, RegistryLookup(sessions), dead, influx)
    ingester.start()
    try:
        assert ingester.source.subscribed.wait(10)
        pub = Publisher("127.0.0.1", mosquitto.port, client_id="fuzz-gateway")
        pub.publish_many(messages)
        pub.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                ingester.stats.received >= len(messages) and ingester.spool.depth() == 0
                and ingester.stats.stored_points >= len(valid)):
            time.sleep(0.05)
    finally:
        ingester.stop()

    stats = ingester.stats
    assert stats.received == len(messages) == 400
    assert stats.accepted == len(valid) and stats.duplicates == 0
    assert sum(stats.rejected.values()) == len(bad)
    (row,) = influx.records('SELECT count("pm25") AS n FROM "air_quality"')
    assert row["n"] == len(valid)
    assert dead.count() == len(bad)
    assert stats.received == row["n"] + dead.count()
    assert set(dead.counts_by_reason()) == {"bad_json", "bad_envelope", "unknown_device", "sensor_sentinel",
                                            "too_old"}
