"""The MQTT source on a real broker: plain QoS 0/1 PUBLISH packets, packets with MQTT 5 properties,
payloads far larger than one socket read and a UTF-8 topic arrive intact and in order; the manual
PUBACKs sent from another thread reach the broker, so a new connection of the same session gets
nothing again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.model import Message
from core.settings import MqttSettings
from ingest.mqtt_source import Delivery, MqttSource
from storage import stack

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


class Collector:
    """Keeps every message and acks it at once (from another thread, as the ingester does)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.pending: list[Delivery] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Message, delivery: Delivery) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload, delivery.qos))
            self.pending.append(delivery)

    def take(self) -> list[Delivery]:
        with self.lock:
            out, self.pending = self.pending, []
        return out


def test_every_message_arrives_intact_and_acks_reach_the_broker(broker: stack.Service) -> None:
    settings = MqttSettings(port=broker.port, client_id="source-test", topics=["fp/#"])
    sink = Collector()
    source = MqttSource(settings, sink)
    source.start()
    assert source.subscribed.wait(15)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fp-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("gateway", "gw-7")
    want: list[tuple[str, bytes, int]] = []
    for k in range(3000):
        topic, payload, qos, p = "fp/small", f'{{"k":{k}}}'.encode(), 1, None
        if k % 500 == 7:
            topic, payload = "fp/big", bytes(range(256)) * (800 + k // 500)  # ~200 KiB, many reads
        elif k % 100 == 3:
            p = props  # MQTT 5 user properties
        elif k % 100 == 5:
            qos = 0
        elif k % 250 == 9:
            topic = "fp/Makassar-é"
        want.append((topic, payload, qos))
        info = pub.publish(topic, payload, qos=qos, properties=p)
        if k % 200 == 199:
            info.wait_for_publish(10)
    try:
        deadline = time.monotonic() + 60
        while len(sink.got) < len(want) and time.monotonic() < deadline:
            source.ack_many(sink.take())
            time.sleep(0.02)
        source.ack_many(sink.take())
        time.sleep(0.5)
        assert len(sink.got) == len(want)
        for qos in (0, 1):  # the publisher holds back QoS 1 beyond its in-flight window, not QoS 0
            got = [m for m in sink.got if m[2] == qos]
            assert got == [m for m in want if m[2] == qos]  # order kept, bytes intact, nothing twice
    finally:
        pub.loop_stop()
        pub.disconnect()
        source.stop()
    again = Collector()
    second = MqttSource(settings, again)
    second.start()
    try:
        assert second.subscribed.wait(15)
        time.sleep(1.0)
        assert again.got == []  # every PUBACK of the batches reached the broker
    finally:
        second.stop()
