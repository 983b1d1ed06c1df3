"""MQTT alert notifications on a broker with passwords and an ACL (``lorong stack up --auth``).

A real Mosquitto 2 reads the password and ACL files; the alert publisher logs in with its own
account. With the ACL granting it ``lorong/alerts/#`` an alert reaches a subscriber allowed to read
``lorong/alerts/#``; with the grant gone, Mosquitto answers the MQTT 5 publish with PUBACK reason
0x87 (Not authorized) and the outbox row stays pending with that reason. (To an MQTT 3.1.1 client
Mosquitto acknowledges a denied publish like any other and drops it, so that row was marked sent.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from analytics.alerts import AlertBook
from analytics.notify_mqtt import MqttChannel
from analytics.outbox import Outbox
from devices.credentials import mosquitto_hash
from storage import stack
from storage.tables import NotificationOutboxRow as Row
from tests.analytics.test_scenarios import NOW

pytestmark = pytest.mark.integration

PUBLISHER, PUBLISHER_PW = "lorong-alerts", "alerts-secret"
READER, READER_PW = "alerts-reader", "reader-secret"


class AuthSubscriber:
    """An MQTT 5 client logged in as ``username``, subscribed to ``lorong/alerts/#`` (QoS 1)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.granted: list[int] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe("lorong/alerts/#", qos=1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "subscriber not ready"

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        self.granted = [c.value for c in codes]
        self._ready.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def settle(self, expected: int, timeout_s: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        """Wait until ``expected`` messages arrived, then 0.3 s more for any extra one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < expected:
            time.sleep(0.02)
        time.sleep(0.3)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def write_auth_files(mq: Path, publisher_grant: bool) -> tuple[Path, Path]:
    """A password file with the publisher and the reader, and an ACL that lets the reader read
    ``lorong/alerts/#`` and the publisher write it (or, without ``publisher_grant``, nothing)."""
    mq.mkdir(parents=True, exist_ok=True)
    passwd, acl = mq / "passwd", mq / "acl"
    passwd.write_text(f"{PUBLISHER}:{mosquitto_hash(PUBLISHER_PW)}\n{READER}:{mosquitto_hash(READER_PW)}\n")
    grant = "topic write lorong/alerts/#\n" if publisher_grant else ""
    acl.write_text(f"user {READER}\ntopic read lorong/alerts/#\n\nuser {PUBLISHER}\n{grant}")
    return passwd, acl


@pytest.fixture
def denied_broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker whose ACL grants the alert publisher nothing."""
    passwd, acl = write_auth_files(tmp_path / "mq", publisher_grant=False)
    svc = stack.start_mosquitto(tmp_path / "broker", stack.free_port(), passwd, acl)
    yield svc
    svc.stop()


def open_alert(sessions: Any, device: str = "A1") -> int:
    """Open one bin_full alert with an ``mqtt`` outbox row; its id."""
    with sessions.begin() as s:
        return AlertBook(s, channels=["mqtt"]).raise_(device, "bin_full", "major", NOW, {"fillingLevel": 0.9},
                                                       "Wajo")[0].id


def mqtt_rows(sessions: Any) -> list[Row]:
    """The ``mqtt`` outbox rows, by id."""
    with sessions() as s:
        return list(s.scalars(select(Row).where(Row.channel == "mqtt").order_by(Row.id)))


def test_publish_denied_by_the_acl_stays_pending_with_the_brokers_reason(sessions: Any,
                                                                         denied_broker: stack.Service) -> None:
    sub = AuthSubscriber(denied_broker.port, READER, READER_PW)
    box = Outbox(sessions, {"mqtt": MqttChannel("127.0.0.1", denied_broker.port, PUBLISHER, PUBLISHER_PW,
                                                timeout_s=5.0)})
    try:
        open_alert(sessions)
        report = box.dispatch()
        msgs = sub.settle(1, timeout_s=1.0)
        status = box.status()
    finally:
        box.close()
        sub.close()
    assert report.sent == {} and "Not authorized" in report.deferred["mqtt"]
    (row,) = mqtt_rows(sessions)
    assert (row.sent_at, row.failed_at, row.attempts) == (None, None, 1)
    assert row.last_error is not None and "PUBACK reason 135 (Not authorized)" in row.last_error
    assert msgs == []  # the broker dropped it
    assert [(s.channel, s.pending, s.last_error) for s in status] == [("mqtt", 1, row.last_error)]
