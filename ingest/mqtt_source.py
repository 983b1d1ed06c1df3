"""The MQTT edge of the ingester: the only module that imports paho-mqtt.

MQTT 5, QoS 1, a fixed client id and a persistent session (clean start off, session expiry
one day), so the broker queues messages while the ingester is down. Subscriptions are made in
the connect callback, so a reconnect re-subscribes. Acknowledgements are manual
(``manual_ack=True``): the ingester acks a message only once its readings are durable
(MQTT 5.0 section 4.3.2: the receiver owns the message once it sends PUBACK).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.model import Message, utcnow
from core.settings import MqttSettings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 86400
"""How long the broker keeps the ingester's session and queue while it is offline."""

OnMessage = Callable[[Message, int, int], None]
"""Callback ``(message, mid, qos)``; it must call :meth:`MqttSource.ack` for QoS > 0."""


class MqttSource:
    """Subscribes to the configured topic filters and hands each message to ``on_message``.

    Args:
        settings: broker address, credentials, client id, QoS and topic filters.
        on_message: called on paho's network thread for every message.
    """

    def __init__(self, settings: MqttSettings, on_message: OnMessage) -> None:
        self.settings = settings
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, pw)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_subscribe = self._subscribed
        self._client.on_message = self._message

    def _connected(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        log.info("connected to %s:%s", self.settings.host, self.settings.port)
        self.connected.set()
        client.subscribe([(t, self.settings.qos) for t in self.settings.topics])

    def _subscribed(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            log.error("subscription refused: %s", ", ".join(bad))
        self.subscribed.set()

    def _disconnected(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        log.warning("disconnected from broker: %s", reason)

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(Message(msg.topic, bytes(msg.payload), utcnow()), msg.mid, msg.qos)

    def ack(self, mid: int, qos: int) -> None:
        """Send the PUBACK for message ``mid`` (no-op for QoS 0)."""
        if qos > 0:
            self._client.ack(mid, qos)

    def start(self) -> None:
        """Connect (retrying in the background) and start paho's network thread."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = 1000
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
