"""Publishes simulated uplinks over MQTT: the only paho import of the simulator."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    """A QoS 1 MQTT 5 publisher.

    Args:
        host, port: the broker.
        client_id: MQTT client id.
        username, password: optional credentials.
    """

    def __init__(self, host: str, port: int, client_id: str = "lorong-sim",
                 username: str | None = None, password: str | None = None) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(100)
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Publish and wait until the broker acknowledged it (QoS 1 PUBACK).

        Raises:
            RuntimeError: the publish failed or was not acknowledged in time.
        """
        info = self._queued(self._client.publish(topic, payload, qos=qos), qos)
        info.wait_for_publish(timeout=timeout_s)
        if not info.is_published():
            raise RuntimeError(f"publish to {topic} not acknowledged within {timeout_s} s (rc={info.rc})")

    @staticmethod
    def _queued(info: mqtt.MQTTMessageInfo, qos: int) -> mqtt.MQTTMessageInfo:
        """A QoS > 0 message published while the connection is down is kept by paho and sent after
        it reconnects; clear its "no connection" code so waiting for the PUBACK works."""
        if qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN:
            info.rc = mqtt.MQTT_ERR_SUCCESS
        return info

    def publish_many(self, messages: list[tuple[str, bytes]], qos: int = 1, timeout_s: float = 30.0) -> None:
        """Publish all, then wait for every acknowledgement."""
        infos = [self._queued(self._client.publish(t, p, qos=qos), qos) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=timeout_s)
            if not info.is_published():
                raise RuntimeError(f"a publish was not acknowledged within {timeout_s} s")

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


class FailoverPublisher:
    """A QoS 1 MQTT 3.1.1 publisher for a cluster (NATS accepts MQTT 3.1.1 only): it publishes to
    one node and, when that node stops acknowledging, connects to the next one of ``nodes`` and
    publishes again every message not yet acknowledged (at least once: a message whose PUBACK was
    lost with its node is sent twice; the ingester stores the second copy as the same point).

    Args:
        nodes: ``(host, port)`` of each node's MQTT listener, tried in order, round robin.
        client_id: MQTT client id (clean session).
        ack_timeout_s: a node that acknowledges nothing for this long counts as lost (s).
    """

    def __init__(self, nodes: list[tuple[str, int]], client_id: str = "lorong-sim",
                 ack_timeout_s: float = 5.0) -> None:
        if not nodes:
            raise ValueError("FailoverPublisher needs at least one (host, port)")
        self.nodes, self.client_id, self.ack_timeout_s = list(nodes), client_id, ack_timeout_s
        self.node = 0
        """Index in ``nodes`` of the node in use."""
        self.switches = 0
        """How many times the publisher moved to another node."""
        self._client: mqtt.Client | None = None
        self._up = False

    def _open(self, deadline: float) -> mqtt.Client:
        import time

        while time.monotonic() < deadline:
            host, port = self.nodes[self.node]
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
            client.max_inflight_messages_set(100)
            client.on_connect = lambda *_a: setattr(self, "_up", True)
            client.on_disconnect = lambda *_a: setattr(self, "_up", False)
            self._up = False
            try:
                client.connect(host, port, keepalive=5)
                client.loop_start()
                until = time.monotonic() + self.ack_timeout_s
                while not self._up and time.monotonic() < until:
                    time.sleep(0.01)
                if self._up:
                    return client
            except OSError:
                pass
            client.loop_stop()
            self._next()
            time.sleep(0.2)
        raise RuntimeError(f"no MQTT node of {self.nodes} accepted a connection")

    def _next(self) -> None:
        self.node = (self.node + 1) % len(self.nodes)
        self.switches += 1

    def _drop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def publish_many(self, messages: list[tuple[str, bytes]], timeout_s: float = 60.0) -> None:
        """Publish all at QoS 1 and return once each is acknowledged by some node.

        Raises:
            RuntimeError: not all acknowledged within ``timeout_s``.
        """
        import time

        deadline = time.monotonic() + timeout_s
        pending = list(messages)
        while pending:
            if self._client is None:
                self._client = self._open(deadline)
            client = self._client
            infos = [(m, Publisher._queued(client.publish(m[0], m[1], qos=1), 1)) for m in pending]
            last_progress, acked = time.monotonic(), 0
            while time.monotonic() < deadline:
                now_acked = sum(1 for _, i in infos if i.is_published())
                if now_acked == len(infos):
                    return
                if now_acked > acked:
                    last_progress, acked = time.monotonic(), now_acked
                if not self._up or time.monotonic() - last_progress > self.ack_timeout_s:
                    break
                time.sleep(0.005)
            pending = [m for m, i in infos if not i.is_published()]
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{len(pending)} publishes not acknowledged within {timeout_s} s")
            self._drop()  # that node is gone or stuck: the next one gets what it did not acknowledge
            self._next()

    def close(self) -> None:
        """Disconnect."""
        self._drop()
