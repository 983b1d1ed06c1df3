"""Retained messages on a real Mosquitto (issue 14, item 5).

A retained reading without a device time is stored once, not again each time the ingester
subscribes anew with its persistent session (MQTT 5 retain handling 1, MQTT 5.0 section 3.8.3.1);
the empty retained payload that clears a topic (MQTT 5.0 section 3.3.1.3) is not a dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from ingest.deadletter import DeadLetterStore
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.ingest.test_delivery_support import count_stored, register_fleet, settings_for, start_ingester, uplinks
from tests.support import wait_for

pytestmark = pytest.mark.integration

DEVICES = ("RET-00", "RET-01")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only (stack config: persistence on)."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


def publish(port: int, topic: str, payload: bytes, retain: bool) -> None:
    """One QoS 1 publish, waited for."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ret-pub", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_retained_reading_stored_once_across_resubscriptions(tmp_path: Path, db_url: str, sessions: Any,
                                                             influx: InfluxClient, broker: stack.Service) -> None:
    register_fleet(sessions, DEVICES)
    retained = {"device_id": "RET-00", "metrics": {"pm25": {"value": 12.0, "unit": "ug/m3"}}}  # no time, no seq
    publish(broker.port, "lorong/v1/RET-00/up", json.dumps(retained).encode(), retain=True)
    settings = settings_for(tmp_path, db_url, broker.port, influx, "ret-ing")
    markers = uplinks(4, devices=("RET-01",))  # timed readings: one per run, to know the run saw everything
    for run, marker in enumerate(markers):
        ing = start_ingester(settings, sessions, influx)  # the same client id: session present from run 1 on
        try:
            publish(broker.port, marker.topic, marker.payload, retain=False)
            wait_for(lambda run=run: count_stored(influx, "RET-01") == run + 1, 20, f"marker of run {run} stored")
        finally:
            ing.stop()
    assert count_stored(influx, "RET-01") == len(markers)
    assert count_stored(influx, "RET-00") == 1  # the retained reading once, not once per subscription


def test_empty_retained_payload_is_not_a_dead_letter(tmp_path: Path, db_url: str, sessions: Any,
                                                     influx: InfluxClient, broker: stack.Service) -> None:
    register_fleet(sessions, DEVICES)
    ing = start_ingester(settings_for(tmp_path, db_url, broker.port, influx, "ret-clear"), sessions, influx)
    try:
        publish(broker.port, "lorong/v1/RET-00/up", b"", retain=True)  # clears the topic's retained message
        marker = uplinks(1, devices=("RET-01",))[0]
        publish(broker.port, marker.topic, marker.payload, retain=False)
        wait_for(lambda: count_stored(influx, "RET-01") == 1, 20, "marker stored")
        wait_for(lambda: ing.stats.received == 2 and not ing._acks, 10, "both messages handled and acked")
        assert ing.stats.empty == 1
        assert dict(ing.stats.rejected) == {}
    finally:
        ing.stop()
    assert DeadLetterStore(sessions).count() == 0
