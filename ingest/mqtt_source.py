"""The MQTT edge of the ingester: the only module of ``ingest`` that imports paho-mqtt.

MQTT 5, QoS 1, a fixed client id and a persistent session (clean start off, session expiry
one day), so the broker queues messages while the ingester is down. Subscriptions are made in
the connect callback, so a reconnect re-subscribes. Acknowledgements are manual
(``manual_ack=True``): the ingester acks a message only once its readings are durable
(MQTT 5.0 section 4.3.2: the receiver owns the message once it sends PUBACK).

Acks are only valid on the connection that delivered the message. After a reconnect the
broker resends every unacknowledged message with its original packet id (MQTT 5.0 section
4.4), then reuses ids it considers free; an ack carried over from the old connection could
therefore acknowledge a *different*, not yet durable message. Every delivery carries the
connection generation it arrived on, and :meth:`MqttSource.ack_many` drops acks of older
generations: the broker redelivers those messages and the redelivery is stored again, which
InfluxDB makes harmless (same series and timestamp).

Everything MQTT is paho's: this module adds no framing of its own. (A hand-written PUBLISH
decoder on paho's private methods was measured at about a fifth of the network thread's time;
it was left out because it would tie Lorong to paho internals that may change in any release.)

Shared subscriptions: a topic filter ``$share/<group>/<filter>`` makes the broker hand each
message to one member of the group (MQTT 5.0 section 4.8.2). Each ingester of a group needs its
own client id (``LORONG_MQTT__CLIENT_ID``); the same id twice makes the broker disconnect one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.model import Message, utcnow
from core.settings import MqttSettings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 86400
"""How long the broker keeps the ingester's session and queue while it is offline (s)."""

RECEIVE_MAXIMUM = 4096
"""Unacknowledged QoS 1 messages the broker may have in flight to us (MQTT 5 Receive Maximum).

Bounds the ingester's memory (messages waiting for the spool) and, with the flush period, its
throughput: at most this many messages per spool transaction round trip."""


class Delivery(NamedTuple):
    """What is needed to acknowledge one message.

    Attributes:
        mid: MQTT packet identifier.
        qos: 0, 1 or 2 (0 needs no ack).
        generation: connection it arrived on (see the module docstring).
    """

    mid: int
    qos: int
    generation: int


OnMessage = Callable[[Message, Delivery], None]
"""Callback ``(message, delivery)``; the receiver hands ``delivery`` back to
:meth:`MqttSource.ack_many` once the message is durable."""

class MqttSource:
    """Subscribes to the configured topic filters and hands each message to ``on_message``.

    Args:
        settings: broker address, credentials, client id, QoS and topic filters.
        on_message: called on paho's network thread for every message; an exception it raises
            is logged and the message stays unacknowledged (the broker redelivers it after a
            reconnect).
        receive_maximum: see :data:`RECEIVE_MAXIMUM`.
    """

    def __init__(self, settings: MqttSettings, on_message: OnMessage,
                 receive_maximum: int = RECEIVE_MAXIMUM) -> None:
        self.settings = settings
        self.receive_maximum = receive_maximum
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._gate = threading.Lock()
        self._paused = False
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                   protocol=mqtt.MQTTv5, manual_ack=True)
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, pw)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_connect_fail = self._connect_failed
        self._unreachable_logged = False
        self._client.on_subscribe = self._subscribed
        self._client.on_message = self._message

    @property
    def generation(self) -> int:
        """Current connection generation (increases on every connect and disconnect)."""
        return self._generation

    def _connected(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        with self._ack_lock:
            self._generation += 1
        self._unreachable_logged = False
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.host, self.settings.port,
                 self.settings.client_id, flags.session_present)
        self.connected.set()
        client.subscribe([(t, self.settings.qos) for t in self.settings.topics])

    def _connect_failed(self, _c: mqtt.Client, _u: Any) -> None:
        if not self._unreachable_logged:  # paho retries every 1-10 s; say it once
            log.warning("broker %s:%s not reachable; retrying in the background", self.settings.host,
                        self.settings.port)
            self._unreachable_logged = True

    def _subscribed(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        bad = [f"{t}: {r}" for t, r in zip(self.settings.topics, reasons, strict=False) if r.is_failure]
        if bad:
            log.error("subscription refused: %s", ", ".join(bad))
        self.subscribed.set()

    def _disconnected(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._ack_lock:
            self._generation += 1
        self.connected.clear()
        self.subscribed.clear()
        if getattr(reason, "is_failure", True):
            log.warning("disconnected from broker: %s", reason)
        else:
            log.info("disconnected from broker: %s", reason)

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        topic, payload, mid, qos = msg.topic, bytes(msg.payload), msg.mid, msg.qos
        with self._gate:
            if self._paused:
                return
            try:
                self._on_message(Message(topic, payload, utcnow()), Delivery(mid, qos, self._generation))
            except Exception:
                log.exception("message on %s not handled; it stays unacknowledged", topic)

    def ack_many(self, deliveries: Iterable[Delivery]) -> int:
        """Send the PUBACKs of ``deliveries`` in order, skipping those of older connections.

        Returns:
            how many acks were queued for sending.
        """
        sent = 0
        with self._ack_lock:
            current = self._generation
            for d in deliveries:
                if d.qos == 0 or d.generation != current:
                    continue
                self._client.ack(d.mid, d.qos)
                sent += 1
        return sent

    def start(self) -> None:
        """Connect (retrying in the background) and start paho's network thread."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def pause(self) -> None:
        """Stop handing messages to ``on_message`` (waits for the one in progress).

        Messages that arrive afterwards stay unacknowledged; the broker keeps them in the
        session and sends them again on the next connect.
        """
        with self._gate:
            self._paused = True

    def stop(self) -> None:
        """Disconnect cleanly (after the acks already queued) and stop the network thread.

        The session, its subscriptions and its queue stay on the broker for
        :data:`SESSION_EXPIRY_S`.
        """
        self._client.disconnect()
        self._client.loop_stop()
