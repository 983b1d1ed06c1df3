"""The NATS edge of the ingester: uplinks from a JetStream stream of a NATS cluster (``LORONG_INGEST__SOURCE=nats``).

Gateways publish MQTT 3.1.1 at QoS 1 to any node of the cluster; the node answers PUBACK once the
uplink is stored in the stream ``$MQTT_msgs``, replicated on three nodes (see
:mod:`lorong.storage.cluster`). This source reads that stream with a durable pull consumer shared by
every ingester (each uplink goes to one of them) and hands each uplink to ``on_message`` exactly
as :class:`ingest.mqtt_source.MqttSource` does: its MQTT topic (rebuilt from the NATS subject),
its payload, the receive time of its batch. The ingester acknowledges it with :meth:`NatsSource.ack_many`
only once its readings are in the spool, as it acknowledges MQTT.

What is not acknowledged within ``nats.ack_wait_s`` (an ingester killed, a node lost with the
acks in flight) is delivered again, to this or another ingester; a second copy of a reading
rewrites the same InfluxDB point (same series and timestamp). Unlike MQTT packet ids, a JetStream
ack subject names the stream sequence and is valid on any connection to any node, so acks of an
earlier connection are still sent (nats-py buffers them while it reconnects).

nats-py runs in one daemon thread ("nats-source") with its own asyncio loop (uvloop when installed);
it reconnects by itself to the next server of ``nats.servers`` when its node goes. The first
connection is this module's job: every 1 s, doubling up to 10 s, while no server is reachable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from lorong.core.model import Message, utcnow
from lorong.core.settings import Settings
from lorong.storage.cluster import UPLINK_PREFIX, UPLINK_STREAM, consumer_subjects, mqtt_topic

_new_loop: Callable[[], asyncio.AbstractEventLoop]
try:
    from uvloop import new_event_loop as _new_loop
except ImportError:  # pragma: no cover - uvloop is not built for every platform (Windows)
    _new_loop = asyncio.new_event_loop

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 1.0
"""Longest wait of one pull request when the stream is empty (s)."""

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 10.0
"""Wait between first-connection attempts, and after a failed pull: from the first to the last value,
doubling (s)."""

FLUSH_TIMEOUT_S = 2.0
"""Longest wait for the server to confirm the last acks on stop (s)."""

STOP_TIMEOUT_S = 10.0
"""How long :meth:`NatsSource.stop` and :meth:`NatsSource.pause` wait for the loop thread (s)."""

OnMessage = Callable[[Message, str], None]
"""Callback ``(message, ack_subject)``; the receiver hands ``ack_subject`` back to :meth:`NatsSource.ack_many`."""


class NatsSource:
    """Pulls uplinks from the cluster's stream and hands each one to ``on_message``.

    Args:
        settings: ``nats`` (servers, durable consumer, ack wait, batch) and ``mqtt.topics`` (the
            topic filters whose uplinks this ingester takes).
        on_message: called in the loop thread for every uplink, in stream order within a batch; an
            exception it raises is logged and the uplink stays unacknowledged (delivered again after
            ``nats.ack_wait_s``).

    Attributes:
        connected: set while a connection to a node is up.
        subscribed: set once the durable consumer is bound (cleared while disconnected).
    """

    def __init__(self, settings: Settings, on_message: OnMessage) -> None:
        self.settings = settings
        self.nats = settings.nats
        self.subjects = consumer_subjects(settings.mqtt.topics)
        self._on_message = on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._paused = False
        self._stopping = False
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = asyncio.Event()

    # --- in the loop thread -------------------------------------------------------------------

    async def _disconnected(self) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("connection to NATS lost; reconnecting to one of %s", ", ".join(self.nats.servers))
        self.connected.clear()
        self.subscribed.clear()

    async def _reconnected(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        log.info("reconnected to NATS %s", url.netloc if url else "?")
        self.connected.set()

    async def _error(self, exc: Exception) -> None:
        log.debug("NATS client: %s", exc)

    async def _connect(self) -> Any:
        import nats

        delay, logged = RECONNECT_MIN_S, False
        while True:
            try:
                return await nats.connect(list(self.nats.servers), connect_timeout=2, max_reconnect_attempts=-1,
                                          reconnect_time_wait=0.5, ping_interval=5, max_outstanding_pings=2,
                                          name=self.settings.ingest.instance,
                                          disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                                          error_cb=self._error)
            except Exception as exc:
                if not logged:
                    log.warning("no NATS server of %s reachable (%s); retrying in the background",
                                ", ".join(self.nats.servers), exc or type(exc).__name__)
                    logged = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _bind(self, js: Any) -> Any:
        """The pull subscription on the durable consumer, created when missing (same config as
        :func:`lorong.storage.cluster.ensure_uplinks`)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            await js.consumer_info(UPLINK_STREAM, self.nats.durable)
        except NotFoundError:
            await js.add_consumer(UPLINK_STREAM, ConsumerConfig(
                durable_name=self.nats.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.nats.ack_wait_s, max_ack_pending=self.nats.max_ack_pending, max_deliver=-1,
                filter_subjects=self.subjects))
            log.info("created the durable consumer %s on %s", self.nats.durable, UPLINK_STREAM)
        return await js.pull_subscribe_bind(durable=self.nats.durable, stream=UPLINK_STREAM,
                                            pending_msgs_limit=4 * self.nats.fetch_batch)

    async def _pull(self) -> None:
        """Bind, then fetch batches until stopped; any failure waits and binds again."""
        import nats.errors

        nc = self._nc = await self._connect()
        self.connected.set()
        log.info("connected to NATS %s; consumer %s on %s", nc.connected_url.netloc if nc.connected_url else "?",
                 self.nats.durable, ", ".join(self.subjects))
        js = nc.jetstream(timeout=5)
        delay, failing = RECONNECT_MIN_S, False
        sub = None
        while not self._stop_event.is_set():
            try:
                if sub is None:
                    sub = await self._bind(js)
                    self.subscribed.set()
                msgs = await sub.fetch(self.nats.fetch_batch, timeout=FETCH_TIMEOUT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:
                if self._stopping:
                    return
                if not failing:
                    log.warning("pulling from %s failed (%s); retrying", UPLINK_STREAM, exc or type(exc).__name__)
                    failing = True
                sub = None
                self.subscribed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            if failing:
                log.info("pulling from %s works again", UPLINK_STREAM)
                failing, delay = False, RECONNECT_MIN_S
            self._hand_on(msgs)

    def _hand_on(self, msgs: list[Any]) -> None:
        if self._paused:  # stays unacknowledged: delivered again after ack_wait
            return
        received_at, on_message, cut = utcnow(), self._on_message, len(UPLINK_PREFIX)
        for m in msgs:
            subject = m.subject
            topic = mqtt_topic(subject[cut:] if subject.startswith(UPLINK_PREFIX) else subject)
            try:
                on_message(Message(topic, m.data, received_at), m.reply)
            except Exception:
                log.exception("message on %s not handled; it stays unacknowledged", topic)

    async def _send_acks(self, subjects: list[str]) -> None:
        nc = self._nc
        if nc is None or nc.is_closed:
            log.debug("%d acks dropped: connection closed", len(subjects))
            return
        try:
            for s in subjects:
                await nc.publish(s, b"")
        except Exception as exc:  # buffer full while disconnected: the uplinks come again after ack_wait
            log.debug("acks not sent: %s", exc)

    async def _main(self) -> None:
        puller = asyncio.ensure_future(self._pull())
        await self._stop_event.wait()
        self._stopping = self._paused = True
        puller.cancel()
        await asyncio.gather(puller, return_exceptions=True)
        if self._nc is not None:
            try:
                if self._nc.is_connected:
                    await self._nc.flush(timeout=FLUSH_TIMEOUT_S)  # the acks queued before stop()
                await self._nc.close()
            except Exception as exc:
                log.debug("closing the NATS connection: %s", exc)
        self.connected.clear()
        self.subscribed.clear()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(self._main())
        except Exception:
            log.exception("NATS loop thread failed")

    # --- in any thread ------------------------------------------------------------------------

    def ack_many(self, deliveries: Iterable[str]) -> int:
        """Queue the acks of ``deliveries`` (JetStream ack subjects), in order. Thread-safe.

        Returns:
            how many acks were queued for sending.
        """
        acks = [d for d in deliveries if d]
        if not acks or self._loop is None:
            return 0
        try:
            asyncio.run_coroutine_threadsafe(self._send_acks(acks), self._loop)
        except RuntimeError:  # loop closed: stopped
            return 0
        return len(acks)

    def start(self) -> None:
        """Start the loop thread, which connects (retrying while no server is reachable), binds
        the durable consumer and pulls; returns at once."""
        if self._thread is not None:
            return
        loop = _new_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="nats-source", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop handing uplinks to ``on_message`` (waits for the batch in progress); uplinks pulled
        afterwards stay unacknowledged and are delivered again after ``nats.ack_wait_s``."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or thread is threading.current_thread():
            self._paused = True
            return
        done = threading.Event()

        def pause_in_loop() -> None:
            self._paused = True
            done.set()

        try:
            loop.call_soon_threadsafe(pause_in_loop)
        except RuntimeError:
            self._paused = True
            return
        if not done.wait(STOP_TIMEOUT_S):
            self._paused = True
            log.warning("NATS loop thread busy for %.0f s; paused without waiting for it", STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Send the acks already queued, close the connection, end the loop thread (waits up to
        :data:`STOP_TIMEOUT_S`). The durable consumer stays on the cluster."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            loop.call_soon_threadsafe(self._stop_event.set)
        except RuntimeError:
            return
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("NATS loop thread did not stop within %.0f s", STOP_TIMEOUT_S)
