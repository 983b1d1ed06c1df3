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
