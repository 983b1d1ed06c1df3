"""Alert changes published on MQTT, QoS 1, JSON, on the alert's city's topic
``lorong/<city>/alerts/<kecamatan>/<type>/<device>`` and on the topic of before cities,
``lorong/alerts/<kecamatan>/<type>/<device>`` (:func:`topics_for`; ``LORONG_NOTIFY__MQTT_TOPICS``:
``both``, the default, ``city`` or ``legacy``). A consumer of one city subscribes to
``lorong/<city>/alerts/#``, and a broker ACL can give it that city's alerts only; one of every city
to ``lorong/+/alerts/#`` or, as before, ``lorong/alerts/#``. An alert of no city (a device the
registry does not know) is published on the topic of before cities only.

The only paho import of the analytics room. One message per change (opened, escalated,
deescalated, acknowledged, cleared); extending an alert is not a change and publishes nothing.
Payload: ``{"notification_id": ..., "action": ..., "alert": <snapshot>}`` through the outbox
(:class:`MqttChannel`, :mod:`analytics.outbox`), ``{"action": ..., "alert": <snapshot>}`` from a
bare :class:`MqttNotifier` (:func:`analytics.alerts.snapshot`). Messages are not retained: they are
events; the current state is in the API.

The publisher speaks MQTT 5 so that the broker can say no: a send counts as delivered only once a
PUBACK arrived whose reason code accepts it (below 0x80: 0x00 Success, 0x10 No matching
subscribers; MQTT 5.0 sections 3.4.2.1 and 2.4). A broker that denies the publish (Mosquitto 2
answers 0x87 Not authorized when its ACL does not grant the topic) raises :class:`PublishRefused`
with that reason, and the outbox keeps the row pending. An MQTT 3.1.1 PUBACK has no reason code:
Mosquitto acknowledges a denied publish to a 3.1.1 client like any other and drops it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from analytics.alerts import AlertChange
from analytics.outbox import DeliveryRefused, OutboxMessage
from lorong.core.alerts import payload_words

log = logging.getLogger(__name__)

TOPIC_PREFIX = "lorong/alerts"


def topic_level(text: str) -> str:
    """``text`` as one MQTT topic level: ``/``, ``+``, ``#`` and NUL become ``_``; empty is ``none``
    (MQTT 5.0 section 4.7: wildcards are not allowed in topic names)."""
    clean = "".join("_" if c in "/+#\x00" else c for c in text)
    return clean or "none"


def topic_for(alert: dict[str, object], prefix: str = TOPIC_PREFIX) -> str:
    """Topic of an alert snapshot: ``<prefix>/<kecamatan>/<type>/<device_id>``.

    Raises:
        KeyError: the snapshot has no ``type`` or ``device_id``.
    """
    return "/".join((prefix, topic_level(str(alert.get("kecamatan") or "")), topic_level(str(alert["type"])),
                     topic_level(str(alert["device_id"]))))


CITY_TOPIC_ROOT = "lorong"
"""First level of the per-city topics: ``lorong/<city>/alerts/...``."""

TOPIC_MODES = ("both", "city", "legacy")
"""``LORONG_NOTIFY__MQTT_TOPICS``: per-city and legacy topics, per-city only, legacy only."""


def city_topic_for(alert: dict[str, object], root: str = CITY_TOPIC_ROOT) -> str | None:
    """The per-city topic of an alert snapshot, ``<root>/<city>/alerts/<kecamatan>/<type>/<device_id>``,
    or ``None`` for an alert of no city (``city_id`` unset).

    Raises:
        KeyError: the snapshot has no ``type`` or ``device_id``.
    """
    city = str(alert.get("city_id") or "")
    if not city:
        return None
    return topic_for(alert, f"{root}/{topic_level(city)}/alerts")


def topics_for(alert: dict[str, object], mode: str = "both", prefix: str = TOPIC_PREFIX) -> list[str]:
    """Every topic an alert snapshot is published on (module docstring): its city's topic unless
    ``mode`` is ``legacy``, then ``<prefix>/<kecamatan>/<type>/<device_id>`` unless ``mode`` is
    ``city`` (an alert of no city always gets the latter, its only topic).

    Raises:
        KeyError: the snapshot has no ``type`` or ``device_id``.
        ValueError: ``mode`` is not one of :data:`TOPIC_MODES`.
    """
    if mode not in TOPIC_MODES:
        raise ValueError(f"MQTT topic mode {mode!r}: one of {', '.join(TOPIC_MODES)}")
    city = city_topic_for(alert) if mode != "legacy" else None
    legacy = topic_for(alert, prefix)
    return [city, legacy] if city is not None and mode == "both" else [city or legacy]


def alert_topic(change: AlertChange, prefix: str = TOPIC_PREFIX) -> str:
    """Topic of an alert change: ``<prefix>/<kecamatan>/<type>/<device_id>``."""
    return topic_for(change.alert, prefix)


def publisher_client_id(prefix: str = "lorong-analytics") -> str:
    """A client id unique to one alert publisher: ``<prefix>-<hostname>-<pid>-<6 hex>`` (hostname
    cut to 32 characters of ``[A-Za-z0-9._-]``).

    The broker keeps one connection per client id and closes the older one when another connects
    with the same id (MQTT 3.1.1 section 3.1.4, MQTT 5.0 section 3.1.4), so a fixed id let
    ``lorong analytics run-once`` cut off the scheduler's publisher. The publisher needs no
    persistent session (QoS 1, each publish waits for its PUBACK, clean session), so a fresh id per
    process costs nothing; the random suffix also keeps two publishers of one process apart.
    """
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:32] or "host"
    return f"{prefix}-{host}-{os.getpid()}-{secrets.token_hex(3)}"


class PublishRefused(ConnectionError):
    """The broker answered a publish (PUBACK) or the connection (CONNACK) with a failure reason code
    (>= 0x80, MQTT 5.0 section 2.4), e.g. 135 Not authorized: try again later, once the broker's
    accounts or ACL are mended.

    Attributes:
        reason_code: the MQTT 5 reason code (int).
    """

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def describe(reason: ReasonCode) -> str:
    """``reason 135 (Not authorized)``: a reason code as the outbox and the logs show it."""
    return f"reason {reason.value} ({reason.getName()})"


class MqttNotifier:
    """Publishes alert changes with QoS 1 over MQTT 5 and waits for a PUBACK that accepts them.

    Args:
        host, port: broker address.
        client_id: MQTT client id; default :func:`publisher_client_id` (unique, clean session).
        username, password: optional credentials.
        timeout_s: longest wait for the connection and for each PUBACK.
        prefix: topic prefix.

    Raises:
        PublishRefused: (constructor) the broker refused the connection (CONNACK reason, e.g. 135
            Not authorized or 134 Bad user name or password).
        ConnectionError: (constructor) the broker did not accept the connection within
            ``timeout_s`` (a refused TCP connection fails at once).
    """

    def __init__(self, host: str, port: int, client_id: str | None = None, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0, prefix: str = TOPIC_PREFIX) -> None:
        self.prefix, self.timeout_s = prefix, timeout_s
        self._connected = threading.Event()
        self._settled = threading.Event()  # connected, or the first attempt failed
        self._connack: ReasonCode | None = None
        self._acks: dict[int, ReasonCode] = {}  # PUBACK reason by message id, until publish() reads it
        self.client_id = client_id or publisher_client_id()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if username:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port, keepalive=30, clean_start=True)
        self._client.loop_start()
        self._settled.wait(timeout_s)
        if not self._connected.is_set():
            self.close()
            who = f"the alert publisher{f' {username!r}' if username else ''}"
            if self._connack is not None and self._connack.is_failure:
                raise PublishRefused(f"MQTT broker {host}:{port} refused {who}: CONNACK {describe(self._connack)}",
                                     self._connack.value)
            raise ConnectionError(f"MQTT broker {host}:{port} did not accept {who}")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                    properties: object) -> None:
        if self._connack is None or not self._connected.is_set():
            self._connack = reason
        if not reason.is_failure:
            self._connected.set()
        self._settled.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: Properties) -> None:
        self._acks[mid] = reason  # paho calls this before the message counts as published

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._settled.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                       properties: object) -> None:
        self._connected.clear()
        if getattr(reason, "is_failure", True):
            log.warning("alert publisher disconnected: %s", reason)
        else:  # our own clean disconnect at shutdown
            log.info("alert publisher disconnected: %s", reason)

    def __call__(self, change: AlertChange) -> None:
        """Publish one change and wait for its PUBACK.

        Raises:
            ConnectionError: not connected, or no PUBACK within ``timeout_s``.
        """
        alert = {**change.alert, **payload_words(str(change.alert.get("type")))}
        payload = json.dumps({"action": change.action, "alert": alert}, separators=(",", ":"))
        self.publish(alert_topic(change, self.prefix), payload, f"alert {change.alert_id} {change.action}")

    def publish(self, topic: str, payload: str, what: str = "message") -> None:
        """Publish ``payload`` on ``topic`` with QoS 1 and wait for a PUBACK that accepts it.

        Args:
            topic: MQTT topic name.
            payload: UTF-8 text (JSON).
            what: names the message in errors.

        Raises:
            PublishRefused: the PUBACK carries a failure reason code (>= 0x80), e.g. 135 Not
                authorized when the broker's ACL does not let this account publish on ``topic``.
            ConnectionError: not connected, or no PUBACK within ``timeout_s``.
        """
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise ConnectionError(f"{what} not published: {exc}") from exc
        if not info.is_published():
            raise ConnectionError(f"{what}: no PUBACK within {self.timeout_s} s")
        reason = self._acks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            raise PublishRefused(f"{what} on {topic}: broker answered PUBACK {describe(reason)}", reason.value)

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now."""
        return self._connected.is_set()

    def __repr__(self) -> str:
        return f"MqttNotifier({self.prefix!r})"

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


class MqttChannel:
    """Outbox channel ``mqtt`` (:class:`analytics.outbox.Channel`): each row's payload, as is, on
    :func:`topics_for` its alert, QoS 1, delivered once the PUBACK of every topic arrived (a resend
    repeats them all: receivers drop a ``notification_id`` they have seen).

    The connection is opened on the first send and kept. Any failure closes it: paho keeps
    unacknowledged QoS 1 messages in memory and would send them again after a reconnect, behind the
    outbox's back; with the client gone, only the outbox decides what is sent again. A broker that
    is down costs one refused TCP connection per try (the outbox spaces the tries).

    Args:
        host, port, username, password: broker address and credentials.
        timeout_s: longest wait for the connection and for each PUBACK.
        prefix: prefix of the topics of before cities.
        topics: ``both``, ``city`` or ``legacy`` (:func:`topics_for`).

    Raises:
        ValueError: an unknown ``topics``.
    """

    def __init__(self, host: str, port: int, username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0, prefix: str = TOPIC_PREFIX, topics: str = "both") -> None:
        if topics not in TOPIC_MODES:
            raise ValueError(f"MQTT topic mode {topics!r}: one of {', '.join(TOPIC_MODES)}")
        self.host, self.port, self.prefix, self.timeout_s, self.topics = host, port, prefix, timeout_s, topics
        self._auth = (username, password)
        self._pub: MqttNotifier | None = None

    def send(self, message: OutboxMessage) -> None:
        """Publish one outbox row and wait for its PUBACK.

        Raises:
            DeliveryRefused: the payload is not an alert notification (no topic can be made of it).
            PublishRefused: the broker refused the connection or the publish (its reason code is
                in the message, e.g. ``PUBACK reason 135 (Not authorized)``); the row stays pending.
            ConnectionError: the broker cannot be reached, or did not acknowledge in time.
        """
        try:
            topics = topics_for(message.body["alert"], self.topics, self.prefix)
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryRefused(f"notification {message.id}: bad payload: {exc!r}") from exc
        if self._pub is None:
            self._pub = MqttNotifier(self.host, self.port, username=self._auth[0], password=self._auth[1],
                                     timeout_s=self.timeout_s, prefix=self.prefix)
        try:
            if not self._pub.connected:
                raise ConnectionError(f"MQTT broker {self.host}:{self.port}: connection lost")
            for topic in topics:
                self._pub.publish(topic, message.payload, f"notification {message.id}")
        except ConnectionError:
            self.close()
            raise

    @property
    def client_id(self) -> str | None:
        """Client id of the open connection, if any."""
        return self._pub.client_id if self._pub is not None else None

    def __repr__(self) -> str:
        return f"MqttChannel({self.host}:{self.port})"

    def close(self) -> None:
        """Disconnect (the next send connects again)."""
        pub, self._pub = self._pub, None
        if pub is not None:
            pub.close()
