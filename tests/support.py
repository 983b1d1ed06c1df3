"""Helpers shared by the tests."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition",
             every_s: float = 0.05) -> None:
    """Poll ``predicate`` every ``every_s`` seconds until it is true; fail the test naming ``what``
    after ``timeout_s`` seconds (a bounded wait: no test polls forever)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    pytest.fail(f"not within {timeout_s} s: {what}")


class Subscriber:
    """A real MQTT client subscribed to ``topic`` (QoS 1) on a loopback broker, collecting the JSON
    messages as ``(topic, decoded payload)``.

    Args:
        port: the broker's port on 127.0.0.1.
        username, password: log in with this account (a broker with ``password_file``), else anonymous.
        mqtt5: speak MQTT 5 (else 3.1.1).
        topic: the subscription filter.

    Attributes:
        granted: the SUBACK reason codes (0/1/2: the granted QoS; 128 or more: refused, e.g. by the ACL).
    """

    def __init__(self, port: int, username: str | None = None, password: str | None = None, mqtt5: bool = False,
                 topic: str = "lorong/alerts/#") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.granted: list[int] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"alerts-sub-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
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
        """Wait until ``expected`` messages arrived (at most ``timeout_s`` seconds), then 0.3 s more
        for any extra one; return them all."""
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


def kill_if_running(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if the test left it running (an assertion or a timeout came first) and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)
