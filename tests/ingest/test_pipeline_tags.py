"""ChirpStack ``deviceInfo.tags`` reach InfluxDB as tags; registry tags cannot be overridden."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ingest.pipeline import Pipeline
from lorong.core.model import DeviceInfo, DeviceKind, Message, to_ms

CASE = Path(__file__).parent / "cases" / "chirpstack-v4" / "object_from_device_profile_codec"


class Devices(dict[str, DeviceInfo]):
    pass


def test_chirpstack_tags_become_influx_tags() -> None:
    dev = DeviceInfo("0101010101010101", DeviceKind.BIN, "milesight-em310-udl", "Panakkukang", 2500.0, 200.0)
    pipeline = Pipeline(Devices({dev.device_id: dev}))
    payload = json.loads((CASE / "payload.json").read_text())
    payload["deviceInfo"]["tags"] = {"key": "value", "device_id": "SPOOFED", "kecamatan": "Elsewhere"}
    msg = Message((CASE / "topic.txt").read_text().strip(), json.dumps(payload).encode(),
                  datetime(2022, 7, 18, 9, 34, 16, tzinfo=UTC))
    result = pipeline.process(msg)
    assert result.error is None, result.error
    assert len(result.lines) == 1
    series = result.lines[0].split(" ", 1)[0]
    assert series == "waste_container,device_id=0101010101010101,kecamatan=Panakkukang,key=value"


def test_sensor_reported_fill_level_is_not_doubled() -> None:
    """WILSEN.sonic.level reports fill % and distance: one fillingLevel, the sensor's own."""
    from ingest.codecs import decode_hex
    from ingest.validate import validate

    dev = DeviceInfo("WILSEN-1", DeviceKind.BIN, "pepperl-fuchs-wilsen-sonic-level", "Wajo", 1000.0, 0.0)
    raws = decode_hex("pepperl-fuchs-wilsen-sonic-level", 1, "040B010031030B065D06020141A6666603510122")
    readings = validate(raws, dev, datetime.now(UTC))
    fills = [r.value for r in readings if r.metric == "fillingLevel"]
    assert fills == [0.93]


def test_uplinks_without_time_stay_distinct_points() -> None:
    """Twenty time-less uplinks of one device received in the same millisecond (a broker backlog)
    become twenty points 1 ms apart, also from a receive time on a half millisecond (where rounding
    could bunch them); rx_ms keeps the real receive time; a device with its own time, and another
    device, are not moved."""
    devices = {d: DeviceInfo(d, DeviceKind.BIN, kecamatan="Wajo") for d in ("NT-1", "NT-2")}
    pipe = Pipeline(devices)
    rx = datetime(2026, 11, 29, 3, 0, 0, 123500, tzinfo=UTC)  # .5 ms
    base = to_ms(rx)
    assert base == 1795921200124  # round half to even
    times = []
    for k in range(20):
        body = f'{{"metrics": {{"distance": {500 + k}}}}}'.encode()
        res = pipe.process(Message("lorong/v1/NT-1/up", body, rx))
        assert res.error is None and len(res.lines) == 1
        assert f",rx_ms={base}.0 " in res.lines[0]
        times.append(int(res.lines[0].rsplit(" ", 1)[1]))
        assert to_ms(res.readings[0].ts) == base + k and res.readings[0].received_at == rx
    assert times == [base + k for k in range(20)]
    other = pipe.process(Message("lorong/v1/NT-2/up", b'{"metrics": {"distance": 700}}', rx))
    assert other.lines[0].endswith(f" {base}")
    timed = pipe.process(Message("lorong/v1/NT-1/up",
                                 b'{"time": "2026-11-29T03:00:00.123+00:00", "metrics": {"distance": 9}}', rx))
    assert timed.lines[0].endswith(" 1795921200123")  # a device time is the device's: never moved
    senml = pipe.process(Message("senml/NT-1", b'[{"n": "distance", "u": "m", "v": 0.64}]', rx))
    assert senml.error is None and senml.lines[0].endswith(f" {base + 20}")  # SenML "now" is the arrival too


def test_workers_stamp_timeless_uplinks_on_their_own_milliseconds() -> None:
    """Two workers of one share group, each given ten time-less uplinks of one device in the same
    millisecond (their sessions' backlogs emptied at once): twenty distinct times, each worker's on
    its slot, none before the receive time, none more than 2 x 10 ms after it."""
    devices = {"NT-1": DeviceInfo("NT-1", DeviceKind.BIN, kecamatan="Wajo")}
    rx = datetime(2026, 11, 29, 3, 0, 0, 123000, tzinfo=UTC)
    base = to_ms(rx)
    times: dict[int, list[int]] = {}
    for slot in (0, 1):
        pipe = Pipeline(devices, rx_slot=(slot, 2))
        times[slot] = [int(pipe.process(Message("lorong/v1/NT-1/up", f'{{"metrics": {{"distance": {500 + k}}}}}'
                                                .encode(), rx)).lines[0].rsplit(" ", 1)[1]) for k in range(10)]
        assert all(t % 2 == slot for t in times[slot]), times
    every = times[0] + times[1]
    assert len(set(every)) == 20 and min(every) >= base and max(every) < base + 20, times


def test_points_carry_the_device_city() -> None:
    """The registry's city of a device is the ``city`` tag of its points; a payload tag cannot change it."""
    dev = DeviceInfo("0101010101010101", DeviceKind.BIN, "milesight-em310-udl", "Panakkukang", 2500.0, 200.0,
                     city="makassar")
    payload = json.loads((CASE / "payload.json").read_text())
    payload["deviceInfo"]["tags"] = {"city": "jakarta"}
    msg = Message((CASE / "topic.txt").read_text().strip(), json.dumps(payload).encode(),
                  datetime(2022, 7, 18, 9, 34, 16, tzinfo=UTC))
    result = Pipeline(Devices({dev.device_id: dev})).process(msg)
    assert result.error is None, result.error
    assert [r.split(" ", 1)[0] for r in result.lines] == [
        "waste_container,city=makassar,device_id=0101010101010101,kecamatan=Panakkukang"]
