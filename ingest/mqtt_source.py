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

Speed: paho reads one packet per ``select()`` with up to four ``recv()`` calls and builds an
``MQTTMessage`` and a ``Properties`` object per PUBLISH; acks go out one ``send()`` each. The
subclass :class:`_Client` keeps paho's state machine (connect, keepalive, reconnect, QoS 2)
but reads the socket in 64 KiB chunks and drains every complete packet per wake-up, decodes a
QoS 0/1 PUBLISH without properties directly (anything else takes paho's own path), and
:meth:`MqttSource.ack_many` queues all the PUBACKs of a flush as one write. It relies on paho
2.x internals (``_sock_recv``, ``_handle_publish``, ``_packet_queue``); :func:`_fast_path_ok`
checks they exist and otherwise the plain paho paths are used.

Shared subscriptions: a topic filter ``$share/<group>/<filter>`` makes the broker hand each
message to one member of the group (MQTT 5.0 section 4.8.2). Each ingester of a group needs its
own client id (``LORONG_MQTT__CLIENT_ID``); the same id twice makes the broker disconnect one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
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

_READ_CHUNK = 65536
"""Bytes asked of the socket per ``recv()``."""

_MAX_REFILLS = 16
"""``recv()`` calls per network-loop wake-up (16 x 64 KiB, ~5,000 small messages), so that
queued acks and keepalives are written between bursts."""

_PUBACK = 0x40


def _fast_path_ok() -> bool:
    """True when the paho internals :class:`_Client` overrides are there (paho 2.x)."""
    return all(hasattr(mqtt.Client, name) for name in (
        "_sock_recv", "_handle_publish", "_packet_queue", "_packet_read", "_loop_rc_handle"))


class _Client(mqtt.Client):
    """paho's client with buffered reads and a direct path for plain QoS 0/1 PUBLISH packets.

    ``deliver(topic, payload, mid, qos)`` is called on the network thread for each PUBLISH the
    fast path decodes; every other packet (and a PUBLISH with properties, a QoS 2 one, or a
    topic that is not UTF-8) goes through paho unchanged.
    """

    def __init__(self, deliver: Callable[[str, bytes, int, int], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deliver = deliver
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self._refills = 1

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: never serve bytes of the old one
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            if self._refills <= 0:
                raise BlockingIOError()
            self._refills -= 1
            data = super()._sock_recv(_READ_CHUNK)
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos = data, 0
            with self._msgtime_mutex:  # what paho's keepalive check reads
                self._last_bytes_received = time.monotonic()
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos:end]
        self._rpos = min(end, len(self._rbuf))
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read and handle every complete packet the socket holds now (bounded per call)."""
        self._refills = _MAX_REFILLS
        try:
            while True:
                if self._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._refills = 1  # paho's other readers (connect) read straight through

    def _packet_read(self) -> MQTTErrorCode:
        """Decode a complete QoS 0/1 PUBLISH without properties straight from the read buffer;
        leave everything else (and a packet not yet complete in the buffer) to paho."""
        buf, pos = self._rbuf, self._rpos
        n = len(buf)
        if self._in_packet["command"] or pos + 5 > n or buf[pos] & 0xF4 != 0x30 \
                or self._rsock is not self._sock or self._protocol != mqtt.MQTTv5:
            return super()._packet_read()
        header = buf[pos]
        length, mult, i = 0, 1, pos + 1
        while True:  # remaining length, MQTT 5.0 section 1.5.5
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult <<= 7
            if i >= n or i - pos > 4:
                return super()._packet_read()
        end = i + length
        if end > n or length < 3:
            return super()._packet_read()
        slen = (buf[i] << 8) | buf[i + 1]
        at = i + 2 + slen
        qos = (header >> 1) & 3
        mid = 0
        if qos:
            if at + 2 > end:
                return super()._packet_read()
            mid = (buf[at] << 8) | buf[at + 1]
            at += 2
        if at >= end or buf[at] != 0:  # properties present: paho decodes them
            return super()._packet_read()
        try:
            topic = buf[i + 2:i + 2 + slen].decode("utf-8")
        except UnicodeDecodeError:
            return super()._packet_read()
        self._rpos = end
        with self._in_callback_mutex:
            self._deliver(topic, buf[at + 1:end], mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if qos == 2 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        slen = (packet[0] << 8) | packet[1]
        pos = 2 + slen
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        if pos >= len(packet) or packet[pos] != 0:  # properties present (or malformed): paho decodes
            return super()._handle_publish()
        try:
            topic = packet[2:2 + slen].decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        with self._in_callback_mutex:
            self._deliver(topic, bytes(packet[pos + 1:]), mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def queue_pubacks(self, mids: list[int]) -> None:
        """Queue the MQTT 5 PUBACKs (reason Success, no properties: 4 bytes each, MQTT 5.0
        section 3.4.2.1) of ``mids`` as one write, in order."""
        if mids:
            blob = b"".join(bytes((_PUBACK, 2, m >> 8, m & 0xFF)) for m in mids)
            self._packet_queue(_PUBACK, blob, 0, 0)


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
        self._fast = _fast_path_ok()
        opts: dict[str, Any] = {"client_id": settings.client_id, "protocol": mqtt.MQTTv5, "manual_ack": True}
        self._client = (_Client(self._fast_message, CallbackAPIVersion.VERSION2, **opts) if self._fast
                        else mqtt.Client(CallbackAPIVersion.VERSION2, **opts))
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else None
            self._client.username_pw_set(settings.username, pw)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_subscribe = self._subscribed
        self._client.on_message = self._message

    @property
    def generation(self) -> int:
        """Current connection generation (increases on every connect and disconnect)."""
        return self._generation

    def _connected(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        with self._ack_lock:
            self._generation += 1
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.host, self.settings.port,
                 self.settings.client_id, flags.session_present)
        self.connected.set()
        client.subscribe([(t, self.settings.qos) for t in self.settings.topics])

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
        log.warning("disconnected from broker: %s", reason)

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._fast_message(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _fast_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self._gate:
            if self._paused:
                return
            try:
                self._on_message(Message(topic, payload, utcnow()), Delivery(mid, qos, self._generation))
            except Exception:
                log.exception("message on %s not handled; it stays unacknowledged", topic)

    def ack_many(self, deliveries: Iterable[Delivery]) -> int:
        """Send the PUBACKs of ``deliveries`` in order, skipping those of older connections.

        QoS 1 acks go out in one write when the fast path is available (QoS 2 PUBCOMPs one by
        one, in their place in the order).

        Returns:
            how many acks were queued for sending.
        """
        sent = 0
        with self._ack_lock:
            current = self._generation
            run: list[int] = []
            for d in deliveries:
                if d.qos == 0 or d.generation != current:
                    continue
                sent += 1
                if d.qos == 1 and self._fast:
                    run.append(d.mid)
                    continue
                if run:
                    self._client.queue_pubacks(run)  # type: ignore[attr-defined]
                    run = []
                self._client.ack(d.mid, d.qos)
            if run:
                self._client.queue_pubacks(run)  # type: ignore[attr-defined]
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
