"""Switching between one ingester and ``--workers N``: no reading lost, none stored twice.

The two run modes read the stream through different persistent sessions: one ingester as client
id ``<id>`` with the plain topic filters, ``--workers N`` as ``<id>-1`` .. ``<id>-N`` in one
``$share/<group>/`` subscription. Each mode's sessions hold a full copy of the stream, and a
session keeps collecting while its mode is stopped. Left alone, the stopped mode's sessions
deliver, when it runs again, everything the other mode already stored: a reading with a device
time rewrites its point, but one without (stored at its receive time) becomes a second point.
And what was published between the two runs sat only in the old mode's sessions.

So a mode, when it starts, takes over from the other mode's sessions, those whose spool file is
in the spool directory (the ingesters that ran here), before it starts its own ingesters:

1. **Retire**: each old client id is opened as a :class:`RetiringIngester`, the full pipeline
   with that id's spool (locked: if the old mode is still running, :class:`HandoverError`). It
   resumes its session, subscribes only to the hand-over topic :func:`handover_topic` (the
   session's own subscriptions stay as they were), and stores the session's queue like any
   ingester: spool first, acknowledge after. The old sessions of ``--workers N`` are emptied at
   once, each on milliseconds of its own (``IngestSettings.rx_slot``), so that readings without
   a time of one device, queued in several of them, never get the same timestamp.
2. **Prime**: unless none of the old sessions still existed on the broker, each of this mode's
   client ids connects once, subscribes its topic filters and the hand-over topic.
3. **Marker**: once every subscription is acknowledged, one random marker is published at QoS 1
   on the hand-over topic. Mosquitto appends every message for a client to that client's one
   queue in the order it handles the publishes, so the marker cuts every session's queue at the
   same point of the broker's order: what precedes it was published before the marker, what
   follows, after it. An old session stores what precedes the marker and drops what follows (the
   new sessions, subscribed before the marker, have it); a new session acknowledges and drops
   what precedes the marker (the old sessions, which existed before the new ones, have it) and
   leaves what follows unacknowledged, for its ingester to take when it starts.
4. **End**: the new sessions unsubscribe from the hand-over topic and disconnect (kept); the old
   ones flush, acknowledge and disconnect with Session Expiry Interval 0, so the broker drops
   them and they stop collecting. Their spools are drained into InfluxDB and deleted once empty;
   points InfluxDB did not take stay in the file and are written at the next start.

MQTT 5.0 section 4.6 promises order only per topic; a single queue per client is how Mosquitto
2.0 works (``tests/ingest/test_mode_switch.py`` checks it across a switch, publishing all along).

While the broker is not reachable the hand-over waits, as an ingester would. A stop request, a
new session that lost its connection, or a stall (connected, but no progress for
:data:`STALL_S`) before the end undoes the switch: the
old sessions are left on the broker with what they did not store, the new sessions are ended
(what they dropped is in the old ones), and the next start hands over again. A damaged old spool
stops the start with its one ``error:`` line (:class:`lorong.storage.spool.SpoolDamaged`), as it would
stop that old ingester.

One case cannot be sorted out: sessions of both modes on the broker when a switch starts (left by
a release without this hand-over, or by the other mode started without its spool directory). The
new sessions' queue before the marker is dropped, on the reasoning that the mode that ran last
stored it; a warning names them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

from ingest.deadletter import DeadLetterStore
from ingest.mqtt_source import Delivery, MqttSource
from ingest.pipeline import DeviceLookup
from ingest.service import Ingester, spool_name
from lorong.core.errors import HandoverError
from lorong.core.model import Message
from lorong.core.settings import MqttSettings, Settings
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import SpoolBusy, remove_spool

log = logging.getLogger(__name__)

MAX_WORKERS = 64
"""Largest ``--workers`` (the CLI's limit): the old ids of ``--workers`` are ``<id>-1`` .. ``<id>-64``."""

STALL_S = 60.0
"""A hand-over that makes no progress (no subscription, no message) for this long is undone (s)."""

DRAIN_S = 30.0
"""How long an old session's spool may take to reach InfluxDB before it is left for the next start (s)."""

_POLL_S = 0.05


def handover_topic(client_id: str) -> str:
    """The topic the hand-over marker goes to, for base client id ``client_id``: outside
    ``lorong/v1/...`` and the other formats' default topics, so no ingester's filter takes it."""
    return "lorong/ingest/handover/" + spool_name(client_id).removesuffix(".sqlite")


def other_mode_ids(settings: Settings, own: Sequence[str]) -> list[str]:
    """The old client ids to take over from: ``<id>-1`` .. ``<id>-64`` when ``own`` is the single
    ingester ``[<id>]``, else ``<id>``; only those whose spool file is in ``ingest.spool_dir``."""
    base, spool_dir = settings.mqtt.client_id, settings.ingest.spool_dir
    ids = [f"{base}-{i}" for i in range(1, MAX_WORKERS + 1)] if list(own) == [base] else [base]
    return [cid for cid in ids if cid not in own and (spool_dir / spool_name(cid)).exists()]


class RetiringIngester(Ingester):
    """An ingester that empties an old session up to the marker, then ends it (step 1, 4).

    Args:
        settings: the old ingester's settings (its client id; topics: the hand-over topic only).
        devices, dead_letters, influx: as for :class:`ingest.service.Ingester`.
        topic: the hand-over topic.

    Raises:
        lorong.storage.spool.SpoolBusy: the old ingester is running.
    """

    def __init__(self, settings: Settings, devices: DeviceLookup, dead_letters: DeadLetterStore,
                 influx: InfluxClient, topic: str) -> None:
        self.topic = topic
        self.marker = b""
        self.marker_seen = threading.Event()
        super().__init__(settings, devices, dead_letters, influx)
        self.mqtt = cast(MqttSource, self.source)

    def _on_message(self, msg: Message, delivery: Any) -> None:
        if msg.topic == self.topic:  # the marker, or one of an undone hand-over: acked in order
            if self.marker and msg.payload == self.marker:
                self.marker_seen.set()
            with self._lock:
                self._acks.append(delivery)
            return
        if self.marker_seen.is_set():  # published after the marker: the new sessions have it
            return
        super()._on_message(msg, delivery)

    def finish(self, end_session: bool) -> bool:
        """Flush and acknowledge what was taken, disconnect, and drain the spool for up to
        :data:`DRAIN_S`. With ``end_session``, the broker drops the session and an empty spool file
        is deleted; without (a switch undone), both stay, so that the next start finds them again.

        Returns:
            True when the spool file was deleted.
        """
        self.mqtt.end_session = end_session
        self.stop(drain_s=DRAIN_S)
        if not end_session:
            return False
        if self.spool.depth():
            log.warning("spool %s keeps %d points InfluxDB did not take; they are written at the next start",
                        self.spool.path, self.spool.depth())
            return False
        remove_spool(self.spool.path)
        return True


class _Prime:
    """One new session (step 2): subscribes, drops what precedes the marker, keeps what follows."""

    def __init__(self, settings: MqttSettings, topic: str) -> None:
        self.topic, self.marker, self.dropped = topic, b"", 0
        self.marker_seen = threading.Event()
        self.source = MqttSource(settings.model_copy(update={"topics": [*settings.topics, topic]}), self._message)

    def _message(self, msg: Message, delivery: Delivery) -> None:
        if msg.topic == self.topic:
            if self.marker and msg.payload == self.marker:
                self.marker_seen.set()
            self.source.ack_many([delivery])
        elif not self.marker_seen.is_set():  # an old session has it
            self.dropped += 1
            self.source.ack_many([delivery])
        # after the marker: unacknowledged, the broker sends it again to this session's ingester

    def finish(self, end_session: bool) -> None:
        """Leave the hand-over topic and disconnect; ``end_session`` discards the session."""
        self.source.unsubscribe(self.topic)
        self.source.end_session = end_session
        self.source.stop()


RetiringFactory = Callable[[Settings, str], RetiringIngester]
"""Builds the :class:`RetiringIngester` of old settings and a hand-over topic (wired to the
registry, dead-letter store and InfluxDB, see :mod:`ingest.cli`)."""


def _old_settings(settings: Settings, client_id: str, topic: str, slot: int, slots: int) -> Settings:
    """The settings of old session ``client_id``, emptied at once with ``slots - 1`` others: its
    readings without a time go on milliseconds of slot ``slot`` (``IngestSettings.rx_slot``; two
    sessions holding readings of one device would otherwise stamp some alike, and InfluxDB would
    keep only the last)."""
    base, cfg = settings.mqtt.client_id, settings.ingest
    return settings.model_copy(update={
        "mqtt": settings.mqtt.model_copy(update={"client_id": client_id, "topics": [topic]}),
        "ingest": cfg.model_copy(update={"instance": cfg.instance + client_id[len(base):], "metrics_port": 0,
                                         "rx_slot": slot, "rx_slots": slots}),
    })


def _wait(done: Callable[[], bool], progress: Callable[[], int], connected: Callable[[], bool],
          stop: threading.Event, what: str) -> bool:
    """Wait until ``done()``; False when ``stop`` is set. While a connection is down (the broker
    not reachable yet) it waits on: the sources keep trying, as an ingester does.

    Raises:
        HandoverError: ``progress()`` stood still for :data:`STALL_S` while ``connected()``.
    """
    last, since = progress(), time.monotonic()
    while not done():
        if stop.wait(_POLL_S):
            log.warning("stop requested while %s; switch undone", what)
            return False
        now, value = time.monotonic(), progress()
        if value != last or not connected():
            last, since = value, now
        elif now - since > STALL_S:
            raise HandoverError(f"no progress for {STALL_S:.0f} s while {what}; the switch was undone, "
                                "start again")
    return True


def hand_over(settings: Settings, own: Sequence[MqttSettings], retiring: RetiringFactory,
              stop: threading.Event) -> bool:
    """Take over from the other run mode's sessions (module docstring) before ``own`` start.

    Args:
        settings: the base settings (client id ``<id>``, spool directory).
        own: MQTT settings of the ingesters about to start (client ids and topic filters).
        retiring: builds the ingester that empties an old session.
        stop: set to give up (SIGTERM while waiting).

    Returns:
        True when the ingesters may start (nothing to take over, or taken over); False when a
        stop was requested (the switch is undone).

    Raises:
        HandoverError: an old ingester is running (nothing was done); a stall or a lost
            connection of a new session (the switch is undone).
    """
    if settings.ingest.source != "mqtt":
        return True
    own_ids = [m.client_id for m in own]
    old_ids = other_mode_ids(settings, own_ids)
    if not old_ids:
        return True
    topic = handover_topic(settings.mqtt.client_id)
    mode = "one ingester" if own_ids == [settings.mqtt.client_id] else f"--workers {len(own_ids)}"
    olds: list[RetiringIngester] = []
    primes: list[_Prime] = []
    try:
        for i, cid in enumerate(old_ids):
            olds.append(retiring(_old_settings(settings, cid, topic, i, len(old_ids)), topic))
    except BaseException as exc:  # SpoolBusy: that ingester runs; SpoolDamaged: one error line names the file
        for r in olds:
            r.spool.close()
        if isinstance(exc, SpoolBusy):
            raise HandoverError(f"the ingester with client id {exc.path.stem} still runs (its spool {exc.path} is "
                                f"locked): stop it before starting {mode}") from None
        raise
    log.info("starting %s: taking over from the sessions of %s", mode, ", ".join(old_ids))

    def connected() -> bool:
        return all(r.mqtt.connected.is_set() for r in olds) and all(p.source.connected.is_set() for p in primes)

    def progress() -> int:
        return sum(r.stats.received + r.mqtt.subscribed.is_set() for r in olds) + sum(
            p.dropped + p.source.subscribed.is_set() + p.marker_seen.is_set() for p in primes)

    ok = False
    try:
        for r in olds:
            r.start()
        if not _wait(lambda: all(r.mqtt.subscribed.is_set() for r in olds), progress, connected, stop,
                     "resuming the old sessions"):
            return False
        if any(r.mqtt.session_present for r in olds):
            marker = uuid.uuid4().hex.encode()
            primes = [_Prime(m, topic) for m in own]
            for p in primes:
                p.marker = marker
                p.source.start()
            for r in olds:
                r.marker = marker
            if not _wait(lambda: all(p.source.subscribed.is_set() for p in primes), progress, connected, stop,
                         "subscribing the new sessions"):
                return False
            stale = [m.client_id for p, m in zip(primes, own, strict=True) if p.source.session_present]
            if stale:
                log.warning("sessions of both modes were on the broker (%s and %s); what %s queued before the switch "
                            "is dropped as already stored by the other mode", ", ".join(old_ids),
                            ", ".join(stale), ", ".join(stale))
            generations = [p.source.generation for p in primes]
            primes[0].source.publish(topic, marker)
            seen = [r.marker_seen for r in olds] + [p.marker_seen for p in primes]
            if not _wait(lambda: all(e.is_set() for e in seen), progress, connected, stop,
                         "emptying the old sessions up to the marker"):
                return False
            if generations != [p.source.generation for p in primes]:
                # a new session reconnected: the broker resent what it had not seen acknowledged,
                # and this side can no longer tell which side of the marker that was on
                raise HandoverError("a new session lost its connection to the broker during the switch; "
                                    "the switch was undone, start again")
        ok = True
    finally:
        for p in primes:
            p.finish(end_session=not ok)
        taken, dropped = sum(r.stats.received for r in olds), sum(p.dropped for p in primes)
        deleted = [r.finish(end_session=ok) for r in olds]
    log.info("took over %d messages from %s and ended their sessions (%d copies that reached the new sessions "
             "first dropped); %d of %d spool files emptied and deleted", taken, ", ".join(old_ids), dropped,
             sum(deleted), len(deleted))
    return True
