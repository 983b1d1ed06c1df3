"""The MQTT edge of the ingester: the only module of ``ingest`` that imports an MQTT client (gmqtt).

MQTT 5, QoS from the settings, a fixed client id and a persistent session (clean start off,
session expiry one day), so the broker queues messages while the ingester is down. The
subscriptions are made again on every connect (gmqtt does not re-subscribe by itself).

Connecting is this module's job, not gmqtt's: gmqtt waits a fixed time between attempts and
gives up for good after a refusal it deems permanent (a bad password gets CONNACK 0x87 from
Mosquitto), which would leave an ingester started before its broker account exists offline
forever. :class:`_Client` turns gmqtt's ``reconnect()`` into a no-op and one supervisor
coroutine connects, waits for the connection to end, and tries again 1 s later, doubling the
wait up to 10 s while the broker is unreachable or refuses.

Acknowledgements are manual: the ingester acks a message only once its readings are durable
(MQTT 5.0 section 4.3.2: the receiver owns the message once it sends PUBACK). gmqtt's own way
to defer an ack (``optimistic_acknowledgement=False``: a coroutine per message, its PUBACK
written when it returns) costs an asyncio task and a socket write per message, about 38 us of
the ingester's ~120 us per message (measured: 52 against 15 us of CPU per QoS 1 message for
gmqtt alone, 64,000 queued messages). So :class:`_Client` takes over gmqtt's two QoS 1/2
publish hooks (``MqttPackageHandler._handle_qos_1_publish_packet`` and ``..._qos_2_...``,
which receive the decoded PUBLISH and the broker's packet identifier): the message goes to
``on_message`` with its packet identifier in its :class:`Delivery` (after the rest of its socket
read was decoded, see below), and
:meth:`MqttSource.ack_many` later writes the PUBACKs (PUBRECs for QoS 2; gmqtt answers the
PUBREL itself) of a whole flush as one socket write, built with gmqtt's own packet builder.
gmqtt still decodes every packet and keeps the connection. The hooks are private gmqtt names:
the client refuses to start if they are gone, ``pyproject.toml`` keeps gmqtt below 0.9, and
``tests/ingest/test_mqtt_source.py`` watches the PUBACKs on the wire through a recording proxy.

Acks are only valid on the connection that delivered the message. After a reconnect the broker
resends every unacknowledged message with its original packet id (MQTT 5.0 section 4.4), then
reuses ids it considers free; an ack carried over from the old connection could therefore
acknowledge a *different*, not yet durable message. Every delivery carries the connection
generation it arrived on; the acks of a flush are written only when their generation is still
the current one (checked in the loop thread, where connects and disconnects are handled), so
acks of an older connection are dropped. The broker redelivers those messages and the
redelivery is stored again, which InfluxDB makes harmless (same series and timestamp).

Messages are handed on per socket read: gmqtt decodes every packet of a read, then the batch
goes to ``on_message`` in order, each message with the same ``received_at`` (they did arrive
together). Decoding first and then running the pipeline over the batch keeps each one's code
and data hot, and lets the pipeline turn the receive time into epoch milliseconds once per
read instead of once per message.

gmqtt's asyncio loop runs in one daemon thread ("mqtt-source"), under uvloop when it is
installed (measured on this module alone, 60,000 QoS 1 messages: 65 instead of 71 us of CPU
per message). gmqtt logs lost connections and writes to a closed socket at WARNING and each
refused CONNACK as an ERROR that says it will not reconnect; unless the application set a level
for the ``gmqtt`` logger, this module sets it to ERROR, drops those refusal lines, and logs the
state changes itself (connected, lost, not reachable, refused), once per change.

Retained messages are taken once per session, not at each re-subscription (:data:`RETAIN_HANDLING`).

Switching between one ingester and ``--workers N`` (:mod:`ingest.handover`) uses three more
calls: :attr:`MqttSource.session_present` (did the broker still hold the session at the last
connect), :meth:`MqttSource.publish` and :meth:`MqttSource.unsubscribe`, and ``end_session`` for
a :meth:`MqttSource.stop` that ends the session (DISCONNECT with Session Expiry Interval 0, MQTT
5.0 section 3.14.2.2.2) instead of leaving it on the broker.

Shared subscriptions: a topic filter ``$share/<group>/<filter>`` makes the broker hand each
message to one member of the group (MQTT 5.0 section 4.8.2). Each ingester of a group needs its
own client id (``LORONG_MQTT__CLIENT_ID``); the same id twice makes the broker disconnect one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import gmqtt
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50
from gmqtt.mqtt.package import CommandWithMidPacket

from lorong.core.model import Message, utcnow
from lorong.core.settings import MqttSettings

_new_loop: Callable[[], asyncio.AbstractEventLoop]
try:
    from uvloop import new_event_loop as _new_loop
except ImportError:  # pragma: no cover - uvloop is not built for every platform (Windows)
    _new_loop = asyncio.new_event_loop

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 86400
"""How long the broker keeps the ingester's session and queue while it is offline (s)."""

RECEIVE_MAXIMUM = 4096
"""Unacknowledged QoS 1 messages the broker may have in flight to us (MQTT 5 Receive Maximum).

Bounds the ingester's memory (messages waiting for the spool) and, with the flush period, its
throughput: at most this many messages per spool transaction round trip."""

RETAIN_HANDLING = 1
"""MQTT 5 Retain Handling of every subscription (MQTT 5.0 section 3.8.3.1): 1 = the broker sends
retained messages at subscribe time only if the subscription did not exist yet. The session is
persistent and the subscriptions are made again on every connect, so with the default 0 a retained
reading would be taken again at every reconnect or restart (a reading without a device time would be
stored again at each one's receive time). A retained message is taken once, when the session first
subscribes; after the session expired (:data:`SESSION_EXPIRY_S`) it is taken once more."""

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 10.0
"""Wait between connection attempts: from the first to the last value, doubling (s)."""

CONNECT_TIMEOUT_S = 30.0
"""Longest wait for TCP connect plus CONNACK before the attempt counts as failed (s)."""

ACKS_READ_S = 5.0
"""How long :meth:`MqttSource.stop` waits for the broker to answer the PINGREQ sent after the last
acknowledgements before it disconnects anyway (s; under :data:`STOP_TIMEOUT_S`)."""
STOP_TIMEOUT_S = 10.0
"""How long :meth:`MqttSource.stop` and :meth:`MqttSource.pause` wait for the loop thread (s)."""

_REASONS = {  # MQTT 5.0 section 2.4, the codes a SUBACK or a broker's DISCONNECT may carry
    0x80: "unspecified error", 0x83: "implementation specific error", 0x87: "not authorized",
    0x8B: "server shutting down", 0x8D: "keep alive timeout", 0x8E: "session taken over",
    0x8F: "topic filter invalid", 0x91: "packet identifier in use", 0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported", 0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


def _reason(code: int) -> str:
    return f"0x{code:02x} ({_REASONS.get(code, 'see MQTT 5.0 section 2.4')})"


OnPublish = Callable[[Any, bytes, int, int], None]
"""``(topic, payload, qos, packet_id)`` of a QoS 1/2 PUBLISH, in the loop thread."""

_HOOKS = {1: "_handle_qos_1_publish_packet", 2: "_handle_qos_2_publish_packet"}
"""gmqtt's per-QoS publish handlers that :class:`_Client` replaces (``gmqtt/mqtt/handler.py``)."""

_ACK_COMMAND = {1: MQTTCommands.PUBACK, 2: MQTTCommands.PUBREC}
"""What acknowledges a QoS 1 (PUBACK) and a QoS 2 (PUBREC) PUBLISH (MQTT 5.0 sections 3.4, 3.5)."""


class _Client(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type information
    """gmqtt's client without its own reconnecting and with deferred, batched acknowledgements
    (see the module docstring).

    gmqtt calls ``reconnect()`` when a connection ends and after some refused CONNACKs;
    :meth:`MqttSource._supervise` does that instead. QoS 1/2 PUBLISH packets go to
    ``on_publish`` with their packet identifier and are acknowledged by :meth:`send_acks`.

    Raises:
        RuntimeError: this gmqtt release has no such publish hooks (a release this module
            was not written for).
    """

    def __init__(self, *args: Any, on_publish: OnPublish, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handler = getattr(self, "_package_handler", None)
        missing = [name for name in (*_HOOKS.values(), "_handle_pingresp_packet")
                   if not callable(getattr(handler, name, None))]
        if missing:
            raise RuntimeError(f"gmqtt {getattr(gmqtt, '__version__', '?')} has no {', '.join(missing)}: "
                               "the ingester's acknowledgement hooks need gmqtt 0.8")

        def hook(qos: int) -> Callable[[int, bytes, Any, Any], None]:
            def handle(mid: int, payload: bytes, topic: Any, _props: Any) -> None:
                on_publish(topic, payload, qos, mid)
            return handle

        for qos, name in _HOOKS.items():
            setattr(handler, name, hook(qos))
        self.on_pong: Callable[[], None] | None = None
        pkg: Any = handler
        heard = pkg._handle_pingresp_packet

        def pong(cmd: int, packet: bytes) -> None:
            heard(cmd, packet)
            if self.on_pong is not None:
                self.on_pong()

        pkg._handle_pingresp_packet = pong

    async def reconnect(self, delay: bool = False) -> None:
        """Do nothing: :class:`MqttSource` reconnects."""

    def send_acks(self, acks: Iterable[tuple[int, int]]) -> bool:
        """Write the acknowledgements of ``(qos, packet_id)`` pairs, in order, as one write.

        Returns:
            False when there is no open connection (nothing was written).
        """
        conn = self._connection
        if conn is None or conn.is_closing():
            return False
        build, command = CommandWithMidPacket.build_package, _ACK_COMMAND
        conn.send_package(b"".join(build(command[qos], mid, False, 0, MQTTv50) for qos, mid in acks))
        return True

    def ping(self) -> bool:
        """Write a PINGREQ (MQTT 5.0 section 3.12); its PINGRESP calls ``on_pong``.

        Returns:
            False when there is no open connection (nothing was written).
        """
        conn = self._connection
        if conn is None or conn.is_closing():
            return False
        conn._send_ping_request()
        return True


class _QuietRefusals(logging.Filter):
    """Drops gmqtt's "CONNACK ... is permanent, not reconnecting" lines: MqttSource does reconnect,
    and logs the refusal itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("[MqttPackageHandler] CONNACK", "[MqttPackageHandler] not reconn"))


_QUIET = _QuietRefusals()


class Delivery(NamedTuple):
    """What is needed to acknowledge one message.

    Attributes:
        mid: the broker's packet identifier of the PUBLISH (1..65535, valid on its connection
            only); 0 for QoS 0.
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
        settings: broker address, credentials, client id, keepalive, QoS and topic filters.
        on_message: called in the MQTT loop thread for every message, in arrival order; an
            exception it raises is logged and the message stays unacknowledged (the broker
            redelivers it after a reconnect).
        receive_maximum: see :data:`RECEIVE_MAXIMUM`.

    Attributes:
        session_present: the broker's Session Present flag at the last connect (MQTT 5.0
            section 3.2.2.1.2: it still held this client id's session); None before a connect.
        end_session: set before :meth:`stop` to end the session instead of keeping it.
    """

    def __init__(self, settings: MqttSettings, on_message: OnMessage,
                 receive_maximum: int = RECEIVE_MAXIMUM) -> None:
        self.settings = settings
        self.receive_maximum = receive_maximum
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._generation = 0
        self.session_present: bool | None = None
        self.end_session = False
        self._paused = False
        self._stopping = False
        self._batch: list[tuple[str, bytes, Delivery]] = []
        self._suback_wanted: dict[int, str] = {}
        self._unreachable_logged = False
        self._refusal_logged = ""
        self._lost = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = asyncio.Event()
        if logging.getLogger("gmqtt").level == logging.NOTSET:
            logging.getLogger("gmqtt").setLevel(logging.ERROR)
            logging.getLogger("gmqtt.mqtt.handler").addFilter(_QUIET)
        self._client = _Client(settings.client_id, clean_session=False, optimistic_acknowledgement=False,
                               session_expiry_interval=SESSION_EXPIRY_S, receive_maximum=receive_maximum,
                               on_publish=self._publish)
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else None
            self._client.set_auth_credentials(settings.username, pw)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_subscribe = self._subscribed
        self._client.on_message = self._message

    @property
    def generation(self) -> int:
        """Current connection generation (increases on every connect and disconnect)."""
        return self._generation

    # --- in the loop thread -------------------------------------------------------------------

    def _message(self, _client: Any, topic: str, payload: bytes, qos: int, _props: Any) -> None:
        """QoS 0 messages (gmqtt calls a plain function directly; QoS 1/2 come to :meth:`_publish`)."""
        self._publish(topic, payload, qos, 0)

    def _publish(self, topic: Any, payload: bytes, qos: int, mid: int) -> None:
        if self._paused:  # QoS 1/2: stays unacknowledged, the broker sends it again on the next connect
            return
        if type(topic) is not str:  # gmqtt hands on a topic that is not UTF-8 as bytes
            topic = bytes(topic).decode("utf-8", "replace")
        batch = self._batch
        if not batch:  # the first packet of this socket read: hand the read over once gmqtt parsed it all
            self._loop.call_soon(self._read_done)  # type: ignore[union-attr]
        batch.append((topic, payload, Delivery(mid, qos, self._generation)))

    def _read_done(self) -> None:
        """Hand the messages of one socket read to ``on_message``, in order, with one receive time."""
        batch, self._batch = self._batch, []
        if self._paused:  # paused after they arrived: unacknowledged, sent again on the next connect
            return
        received_at, on_message = utcnow(), self._on_message
        for topic, payload, delivery in batch:
            try:
                on_message(Message(topic, payload, received_at), delivery)
            except Exception:
                log.exception("message on %s not handled%s", topic, "; it stays unacknowledged" if delivery.qos else "")

    def _send_acks(self, generation: int, acks: list[tuple[int, int]]) -> None:
        if generation != self._generation:  # the connection ended after ack_many looked
            log.debug("%d acks of an earlier connection dropped", len(acks))
            return
        if not self._client.send_acks(acks):
            log.debug("%d acks dropped: no open connection", len(acks))

    def _connected(self, client: Any, session_present: int, _rc: int, _props: Any) -> None:
        self._generation += 1
        self.session_present = bool(session_present)
        self._unreachable_logged, self._refusal_logged = False, ""
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.host, self.settings.port,
                 self.settings.client_id, bool(session_present))
        self.connected.set()
        self._suback_wanted.clear()
        for topic in self.settings.topics:  # one SUBSCRIBE each; resubscribe() keeps gmqtt's list from growing
            mid = client.resubscribe(gmqtt.Subscription(topic, qos=self.settings.qos,
                                                         retain_handling_options=RETAIN_HANDLING))
            self._suback_wanted[mid] = topic

    def _subscribed(self, _client: Any, mid: int, codes: tuple[int, ...], _props: Any) -> None:
        topic = self._suback_wanted.pop(mid, None)
        if topic is None:  # a SUBACK of an earlier connection
            return
        bad = [f"{topic}: {_reason(c)}" for c in codes if c >= 0x80]
        if bad:
            log.error("subscription refused: %s", ", ".join(bad))
        if not self._suback_wanted:
            self.subscribed.set()

    def _disconnected(self, _client: Any, packet: Any, *_: Any) -> None:
        was_connected = self.connected.is_set()
        self._generation += 1
        self.connected.clear()
        self.subscribed.clear()
        self._suback_wanted.clear()
        if self._stopping:
            log.info("disconnected from broker %s:%s", self.settings.host, self.settings.port)
        elif was_connected:
            why = f" ({_reason(packet[0])})" if isinstance(packet, bytes | bytearray) and packet else ""
            log.warning("connection to broker %s:%s lost%s; reconnecting in the background",
                        self.settings.host, self.settings.port, why)
            self._lost.set()

    async def _supervise(self) -> None:
        """Connect, wait until the connection ends, close what is left, wait, and again."""
        s, client, delay = self.settings, self._client, RECONNECT_MIN_S
        while True:
            self._lost.clear()
            try:
                await asyncio.wait_for(client.connect(s.host, s.port, keepalive=s.keepalive_s, version=MQTTv50),
                                       CONNECT_TIMEOUT_S)
            except OSError as exc:  # refused, unreachable, or TimeoutError
                if not self._unreachable_logged:
                    log.warning("broker %s:%s not reachable (%s); retrying in the background", s.host, s.port,
                                exc or type(exc).__name__)
                    self._unreachable_logged = True
            except gmqtt.MQTTConnectError as exc:
                if str(exc) != self._refusal_logged:
                    log.error("broker %s:%s refused the connection: %s; retrying every %.0f s at most",
                              s.host, s.port, exc, RECONNECT_MAX_S)
                    self._refusal_logged = str(exc)
            else:
                delay = RECONNECT_MIN_S
                await self._lost.wait()
            try:  # the connection that ended, or a half-made one
                await client.disconnect()
            except Exception as exc:
                log.debug("closing the old connection: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _main(self) -> None:
        supervisor = asyncio.ensure_future(self._supervise())
        await self._stop_event.wait()
        self._stopping = self._paused = True  # acks queued before stop() were written before this ran
        supervisor.cancel()
        await self._acks_read()
        if self.end_session:  # the broker drops the session, its subscriptions and its queue
            await self._client.disconnect(session_expiry_interval=0)
        else:
            await self._client.disconnect()

    async def _acks_read(self) -> None:
        """Wait until the broker has read every acknowledgement written so far: a PINGREQ after
        them and its PINGRESP (a broker handles one connection's packets in order, MQTT 5.0
        section 4.6), for at most :data:`ACKS_READ_S`.

        Without it a new connection of the same session (a restart, a mode switch) could reach
        the broker before the old connection's last PUBACKs: the broker takes the session over,
        drops the old connection unread, and delivers those messages again
        (``tests/ingest/test_mqtt_source.py``, a slow uplink).
        """
        heard = asyncio.Event()
        self._client.on_pong = heard.set
        try:
            if self._client.ping():
                await asyncio.wait_for(heard.wait(), ACKS_READ_S)
        except TimeoutError:
            log.warning("the broker did not answer a ping within %.0f s before the disconnect: the "
                        "messages acknowledged last may be delivered again", ACKS_READ_S)
        finally:
            self._client.on_pong = None

    def _exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if self._stopping and isinstance(exc, asyncio.CancelledError):
            return  # a task cancelled by stop()
        loop.default_exception_handler(context)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:  # cancels leftovers, closes the loop
                runner.run(self._main())
        except Exception:
            log.exception("MQTT loop thread failed")

    # --- in any thread ------------------------------------------------------------------------

    def ack_many(self, deliveries: Iterable[Delivery]) -> int:
        """Queue the PUBACKs of ``deliveries`` (in order), skipping QoS 0 and older connections.

        Thread-safe; one hand-over to the loop thread per call.

        Returns:
            how many acks were queued for sending.
        """
        generation = self._generation
        acks = [(d.qos, d.mid) for d in deliveries if d.qos and d.generation == generation]
        if not acks or self._loop is None:
            return 0
        try:
            self._loop.call_soon_threadsafe(self._send_acks, generation, acks)
        except RuntimeError:  # loop closed: stopped
            return 0
        return len(acks)

    def _in_loop(self, call: Callable[..., Any], *args: Any) -> bool:
        if self._loop is None:
            return False
        try:
            self._loop.call_soon_threadsafe(call, *args)
        except RuntimeError:  # loop closed: stopped
            return False
        return True

    def _when_connected(self, call: Callable[..., Any], *args: Any) -> None:
        if self.connected.is_set():
            call(*args)
        else:
            log.warning("not connected: %s not sent", getattr(call, "__name__", "packet"))

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish ``payload`` on ``topic`` at QoS 1 (not retained) on the open connection.

        Thread-safe; the PUBLISH is written after the packets queued before it (one connection:
        the broker handles them in that order).

        Returns:
            False when the loop thread is not running (nothing was queued).
        """
        return self._in_loop(self._when_connected, self._client.publish, topic, payload, 1)

    def unsubscribe(self, topic: str) -> bool:
        """Remove the subscription ``topic`` from the session (one UNSUBSCRIBE; thread-safe). It is
        written before a :meth:`stop` that follows, so the session is stored without it.

        Returns:
            False when the loop thread is not running (nothing was queued).
        """
        return self._in_loop(self._when_connected, self._client.unsubscribe, topic)

    def start(self) -> None:
        """Start the loop thread, which connects (retrying every 1-10 s while the broker is not
        reachable) and subscribes; returns at once."""
        if self._thread is not None:
            return
        loop = _new_loop()
        loop.set_exception_handler(self._exception)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="mqtt-source", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop handing messages to ``on_message`` (waits for the one in progress).

        Messages that arrive afterwards stay unacknowledged; the broker keeps them in the
        session and sends them again on the next connect.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or thread is threading.current_thread():
            self._paused = True
            return
        done = threading.Event()

        def pause_in_loop() -> None:  # runs between two handlers: none is in progress
            self._paused = True
            done.set()

        try:
            loop.call_soon_threadsafe(pause_in_loop)
        except RuntimeError:  # loop closed meanwhile
            self._paused = True
            return
        if not done.wait(STOP_TIMEOUT_S):
            self._paused = True
            log.warning("MQTT loop thread busy for %.0f s; paused without waiting for it", STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Disconnect cleanly (after the acks already queued), then end the loop thread.

        The session, its subscriptions and its queue stay on the broker for
        :data:`SESSION_EXPIRY_S`, unless ``end_session`` was set: then the broker discards them
        (what was not acknowledged is gone). Waits up to :data:`STOP_TIMEOUT_S` for the thread.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            loop.call_soon_threadsafe(self._stop_event.set)
        except RuntimeError:
            return
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("MQTT loop thread did not stop within %.0f s", STOP_TIMEOUT_S)
