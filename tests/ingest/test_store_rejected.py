"""Points InfluxDB refuses (issue 14, item 7), on real mosquitto, influxd and SQLite.

- A tag value InfluxDB 1.x line protocol cannot carry (a kecamatan ending in a backslash,
  ``Depot\\``: a backslash escapes the character after it, and none escapes a backslash) is refused
  where it enters: at registration, and in the pipeline for tags a network server sends.
- A ``store_rejected`` dead letter keeps the message's topic, original payload and receive time, so
  that ``dead-letters replay`` re-processes it once the cause is fixed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from devices.registry import DeviceIn, DeviceUpdate, RegistryLookup
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.pipeline import Pipeline
from ingest.replay import replay_dead_letters
from lorong.core.model import DeviceInfo, DeviceKind, Message
from lorong.storage.influx import InfluxClient
from tests.ingest.test_delivery_support import count_stored, register_fleet, settings_for, start_ingester, uplinks
from tests.support import wait_for


@pytest.mark.parametrize("kecamatan", ["Depot\\", "Dep\\ot"])
def test_registration_refuses_a_backslash_in_a_tag_value(kecamatan: str) -> None:
    with pytest.raises(ValidationError, match="backslash"):
        DeviceIn(id="BSL-01", kind="bin", kecamatan=kecamatan, depth_mm=1000)
    with pytest.raises(ValidationError, match="backslash"):
        DeviceUpdate(kecamatan=kecamatan)


def test_a_network_server_tag_with_a_backslash_is_a_dead_letter_with_its_topic() -> None:
    """ChirpStack ``deviceInfo.tags`` come with each message: such a message is rejected (``bad_tag``)
    and kept whole, instead of becoming a point InfluxDB refuses."""
    device = DeviceInfo(device_id="70B3D57ED0000001", kind=DeviceKind.AIR, codec="", kecamatan="Tallo")
    pipeline = Pipeline({"70B3D57ED0000001": device})
    body = {"deviceInfo": {"devEui": "70b3d57ed0000001", "tags": {"site": "Depot\\"}},
            "time": datetime.now(UTC).isoformat(), "fPort": 1, "object": {"pm25": 10.0}}
    topic = "application/1/device/70b3d57ed0000001/event/up"
    result = pipeline.process(Message(topic, json.dumps(body).encode(), datetime.now(UTC)))
    assert result.error is not None and result.error.reason == "bad_tag", result
    assert not result.lines


@pytest.mark.integration
def test_store_rejected_keeps_topic_and_payload_and_replays(tmp_path: Any, db_url: str, sessions: Any,
                                                          influx: InfluxClient, mosquitto: Any) -> None:
    register_fleet(sessions, ("BSL-00",))
    sent = uplinks(1, devices=("BSL-00",))[0]
    # a string pm25 in the same shard: InfluxDB refuses the float one (HTTP 400 "field type conflict")
    influx.write_lines([f'air_quality,device_id=OTHER pm25="broken" {sent.ts_ms - 1}'])
    ing = start_ingester(settings_for(tmp_path, db_url, mosquitto.port, influx, "bsl-ing"), sessions, influx)
    store = DeadLetterStore(sessions)
    pub = Publisher("127.0.0.1", mosquitto.port, client_id="bsl-pub")
    try:
        pub.publish(sent.topic, sent.payload)
        wait_for(lambda: store.count() == 1, 20, "the refused point dead-lettered")
    finally:
        pub.close()
        ing.stop()
    row = store.list()[0]
    assert row.reason == "store_rejected"
    assert "field type conflict" in row.detail
    assert (row.topic, bytes(row.payload)) == (sent.topic, sent.payload)
    assert count_stored(influx, "BSL-") == 0
    influx.command('DROP MEASUREMENT "air_quality"')  # the operator removes the cause
    report = replay_dead_letters(store, Pipeline(RegistryLookup(sessions)), influx.write_lines, datetime.now(UTC))
    assert report.replayed == [row.id] and report.points == 1
    assert count_stored(influx, "BSL-") == 1
    assert store.count(pending_only=True) == 0
