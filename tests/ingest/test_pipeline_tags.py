"""ChirpStack ``deviceInfo.tags`` reach InfluxDB as tags; registry tags cannot be overridden."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from core.model import DeviceInfo, DeviceKind, Message
from ingest.pipeline import Pipeline

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
