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
(MQTT 5.0 section 4.3.2: the receiver owns the message once it sends PUBACK). This uses gmqtt's
non-optimistic acknowledgement (``optimistic_acknowledgement=False``, MQTT 5 only): the message
handler is a coroutine, gmqtt sends the PUBACK (PUBREC for QoS 2) when it returns, with its
return value as the reason code, and sends nothing when it raises. The handler runs the
pipeline (``on_message``) at once, then awaits the message's future, which :meth:`MqttSource.ack_many`
resolves from the flush thread (one ``call_soon_threadsafe`` per batch).

Acks are only valid on the connection that delivered the message. After a reconnect the broker
resends every unacknowledged message with its original packet id (MQTT 5.0 section 4.4), then
reuses ids it considers free; an ack carried over from the old connection could therefore
acknowledge a *different*, not yet durable message. Every delivery carries the connection
generation it arrived on; when a connection ends, the futures of its messages fail, so their
handlers end without a PUBACK, and :meth:`MqttSource.ack_many` drops acks of older generations.
The broker redelivers those messages and the redelivery is stored again, which InfluxDB makes
harmless (same series and timestamp). asyncio reports the failed handlers as "Exception in
callback" of gmqtt's ack callback; the loop's exception handler silences exactly those.

gmqtt's asyncio loop runs in one daemon thread ("mqtt-source"), under uvloop when it is
installed (measured on this module alone, 60,000 QoS 1 messages: 65 instead of 71 us of CPU
per message). gmqtt logs lost connections and writes to a closed socket at WARNING and each
refused CONNACK as an ERROR that says it will not reconnect; unless the application set a level
for the ``gmqtt`` logger, this module sets it to ERROR, drops those refusal lines, and logs the
state changes itself (connected, lost, not reachable, refused), once per change.

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
from gmqtt.mqtt.constants import MQTTv50

from core.model import Message, utcnow
from core.settings import MqttSettings

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

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 10.0
"""Wait between connection attempts: from the first to the last value, doubling (s)."""

CONNECT_TIMEOUT_S = 30.0
"""Longest wait for TCP connect plus CONNACK before the attempt counts as failed (s)."""

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


class _NoAck(Exception):
    """Ends a message handler without a PUBACK (old connection, pipeline error, paused)."""


class _Client(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type information
    """gmqtt's client without its own reconnecting (see the module docstring).

    gmqtt calls ``reconnect()`` when a connection ends and after some refused CONNACKs;
    :meth:`MqttSource._supervise` does that instead.
    """

    async def reconnect(self, delay: bool = False) -> None:
        """Do nothing: :class:`MqttSource` reconnects."""


class _QuietRefusals(logging.Filter):
    """Drops gmqtt's "CONNACK ... is permanent, not reconnecting" lines: MqttSource does reconnect,
    and logs the refusal itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("[MqttPackageHandler] CONNACK", "[MqttPackageHandler] not reconn"))


_QUIET = _QuietRefusals()


class Delivery(NamedTuple):
    """What is needed to acknowledge one message.

    Attributes:
        mid: message number, counting the QoS 1/2 messages this source received (gmqtt does
            not pass on the broker's packet identifier); 0 for QoS 0.
        qos: 0, 1 or 2 (0 needs no ack).
        generation: connection it arrived on (see the module docstring).
        future: resolved by :meth:`MqttSource.ack_many` to send the PUBACK; None for QoS 0.
    """

    mid: int
    qos: int
    generation: int
    future: asyncio.Future[int] | None = None


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
    """

    def __init__(self, settings: MqttSettings, on_message: OnMessage,
                 receive_maximum: int = RECEIVE_MAXIMUM) -> None:
        self.settings = settings
        self.receive_maximum = receive_maximum
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._generation = 0
        self._count = 0
        self._paused = False
        self._stopping = False
        self._pending: set[asyncio.Future[int]] = set()
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
                                    session_expiry_interval=SESSION_EXPIRY_S, receive_maximum=receive_maximum)
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

    async def _message(self, _client: Any, topic: str, payload: bytes, qos: int, _props: Any) -> int:
        if self._paused:
            if qos:
                raise _NoAck
            return 0
        generation = self._generation
        if not qos:
            try:
                self._on_message(Message(topic, payload, utcnow()), Delivery(0, 0, generation))
            except Exception:
                log.exception("message on %s not handled", topic)
            return 0
        self._count += 1
        future: asyncio.Future[int] = self._loop.create_future()  # type: ignore[union-attr]
        pending = self._pending
        pending.add(future)
        try:
            self._on_message(Message(topic, payload, utcnow()), Delivery(self._count, qos, generation, future))
        except Exception:
            pending.discard(future)
            log.exception("message on %s not handled; it stays unacknowledged", topic)
            raise _NoAck from None
        try:
            code = await future
        finally:
            pending.discard(future)
        if self._generation != generation:  # resolved, but the connection ended before we woke
            raise _NoAck
        return code

    def _resolve(self, futures: list[asyncio.Future[int]]) -> None:
        for future in futures:
            if not future.done():
                future.set_result(0)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, set()
        for future in pending:
            if not future.done():
                future.set_exception(_NoAck())

    def _connected(self, client: Any, session_present: int, _rc: int, _props: Any) -> None:
        self._generation += 1
        self._unreachable_logged, self._refusal_logged = False, ""
        log.info("connected to %s:%s as %s (session present: %s)", self.settings.host, self.settings.port,
                 self.settings.client_id, bool(session_present))
        self.connected.set()
        self._suback_wanted.clear()
        for topic in self.settings.topics:  # one SUBSCRIBE each; resubscribe() keeps gmqtt's list from growing
            mid = client.resubscribe(gmqtt.Subscription(topic, qos=self.settings.qos))
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
        self._fail_pending()
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
        self._stopping = self._paused = True
        await asyncio.sleep(0)  # the handlers woken by acks queued before stop() return ...
        await asyncio.sleep(0)  # ... and gmqtt writes their PUBACKs
        self._fail_pending()
        supervisor.cancel()
        await self._client.disconnect()

    def _exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, _NoAck) or (self._stopping and isinstance(exc, asyncio.CancelledError)):
            return  # a handler ended without a PUBACK, or a task cancelled by stop()
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
        futures = [d.future for d in deliveries if d.qos and d.generation == generation and d.future is not None]
        if not futures or self._loop is None:
            return 0
        try:
            self._loop.call_soon_threadsafe(self._resolve, futures)
        except RuntimeError:  # loop closed: stopped
            return 0
        return len(futures)

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
        :data:`SESSION_EXPIRY_S`. Waits up to :data:`STOP_TIMEOUT_S` for the thread.
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
