"""The broker bounds a publish's payload (``message_size_limit``, mosquitto.conf(5) of the Debian
mosquitto 2.0.11 the stack runs): a 30 MB publish no longer reaches the ingester's queue. The bound
sits above the ingester's ``too_large`` limit, so a payload just over that limit still arrives and
is dead-lettered as ``too_large`` (visible), and one over the bound is dropped by the broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lorong.core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.cli import down, up

pytestmark = pytest.mark.integration


def test_the_broker_drops_payloads_over_its_bound_and_passes_too_large_ones(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'lorong.db'}",
                        mqtt=MqttSettings(port=stack.free_port()),
                        influx=InfluxSettings(url=f"http://127.0.0.1:{stack.free_port()}"),
                        ingest=IngestSettings(max_payload_bytes=1000))
    bound = stack.broker_message_limit(1000)
    assert bound == 16_000
    up(settings, detach=False)
    got: list[int] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="limit-sub")
    sub.on_connect = lambda c, *_: c.subscribe("t/#", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, msg: got.append(len(msg.payload))
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="limit-pub")
    try:
        conf = (tmp_path / "var" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        assert "message_size_limit 16000" in conf
        sub.connect("127.0.0.1", settings.mqtt.port)
        sub.loop_start()
        assert ready.wait(10)
        pub.connect("127.0.0.1", settings.mqtt.port)
        pub.loop_start()
        for size in (1001, bound, bound + 1, 30_000_000, 10):
            pub.publish("t/x", b"x" * size, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 10 not in got:
            time.sleep(0.02)
        assert got == [1001, bound, 10]  # over the bound: dropped by the broker, the client stays connected
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
        down(settings)
