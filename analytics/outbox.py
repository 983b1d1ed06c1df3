"""Alert notifications through a transactional outbox: at-least-once delivery to MQTT and the webhook.

The pattern is C. Richardson's "Transactional outbox" (microservices.io/patterns/data/transactional-outbox):

- **Write.** :class:`analytics.alerts.AlertBook` adds one ``notification_outbox`` row per change and
  channel (:func:`enqueue`) in the session of the change, so a committed change always has its
  rows and a rolled-back change has none. ``payload`` is the JSON text the channel sends
  (:func:`notification_payload`): ``{"notification_id", "action", "alert"}``, the alert with its
  type's words from the catalogue.
- **Send.** :meth:`Outbox.dispatch` (after each job run and on every scheduler tick) sends the due
  rows of each channel in id order. Success (MQTT PUBACK, HTTP 2xx) sets ``sent_at``. A refusal
  (:class:`DeliveryRefused`: HTTP 4xx other than 408/429) sets ``failed_at`` and is not retried
  until an operator re-queues it (``lorong analytics outbox --retry-failed``); the channel goes on
  with the next row. Any other error (broker or receiver down, timeout, 5xx, 408, 429) adds one to
  ``attempts``, keeps the error in ``last_error`` and stops that channel for the round; the row is
  due again after :func:`backoff`. The other channels go on.
- **Routing.** Which channels get a change is up to a :class:`Router` (:class:`Broadcast`: all of
  them; :class:`analytics.notify.NotifyRouter`: MQTT and the webhook get every change, each
  Telegram chat ``telegram:<name>`` the alerts linked to it).
- **Order.** The channel's lowest pending row (its head) goes first; while the head waits for its
  backoff, the rows behind it wait too, so receivers see each alert's changes in order. A row
  held back by quiet hours (``not_before`` in the future) is not a head: the rows behind it go
  on; a change of the same alert that is not held releases it first (:func:`enqueue`).
- **Retry-After.** An error with a ``retry_after_s`` attribute (Telegram's
  ``parameters.retry_after``) makes the row wait at least that long.
- **One sender per channel.** Before sending, the dispatcher claims the head by moving its
  ``next_attempt_at`` to ``now + CLAIM`` in one UPDATE (compare-and-set on "pending and due"), and
  moves the claim to the next row in the transaction that marks a row done. A second dispatcher
  (``run-once`` next to the scheduler) finds the head claimed and leaves the channel alone. A
  dispatcher that dies mid-round leaves a claim that expires after ``CLAIM``.
- **At least once.** A crash between the receiver's acknowledgement and the ``sent_at`` commit sends
  the row again: receivers drop duplicates by ``notification_id`` (the ``alert_history`` id of the
  change: the same on every channel and every resend; the webhook also gets it as the
  ``Idempotency-Key`` header).
- **Retention.** Rows sent more than ``retention_days`` ago are deleted (:meth:`Outbox.purge`);
  refused rows are kept until re-queued and sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, CursorResult, Executable, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.alerts import payload_words
from lorong.core.errors import LorongError
from lorong.core.model import utcnow
from lorong.storage.tables import NotificationOutboxRow as Row

log = logging.getLogger(__name__)

CLAIM = timedelta(minutes=5)
"""How long a dispatcher owns a channel's head row without progress (longer than any one send)."""

ERROR_CHARS = 500
"""``last_error`` is cut to this many characters."""


class DeliveryRefused(LorongError):
    """The receiver refused the notification for good (HTTP 4xx other than 408/429): do not retry."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One channel a change goes to.

    Attributes:
        channel: channel name (``mqtt``, ``webhook``, ``telegram:<chat name>``).
        not_before: hold the row until then (tz-aware; quiet hours), ``None``: send at once.
    """

    channel: str
    not_before: datetime | None = None


class Router(Protocol):
    """Chooses the channels of one alert change (:class:`Broadcast`, :class:`analytics.notify.NotifyRouter`)."""

    @property
    def names(self) -> list[str]:
        """Every channel this router may choose."""

    def __call__(self, action: str, alert: Mapping[str, Any], now: datetime) -> Sequence[Delivery]:
        """The channels of a change.

        Args:
            action: opened, escalated, deescalated, acknowledged, cleared or reminder.
            alert: the alert snapshot after the change (:func:`analytics.alerts.snapshot`).
            now: the time of the change (tz-aware).
        """


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Every change to every channel of ``names``, at once (a :class:`Router`)."""

    channel_names: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """The channels."""
        return list(self.channel_names)

    def __call__(self, action: str, alert: Mapping[str, Any], now: datetime) -> Sequence[Delivery]:
        """One :class:`Delivery` per channel, none held."""
        return [Delivery(c) for c in self.channel_names]


def as_router(channels: Sequence[str] | Router) -> Router:
    """``channels`` as a :class:`Router`: a list of names becomes a :class:`Broadcast`."""
    if isinstance(channels, (list, tuple)):
        return Broadcast(tuple(channels))
    return cast(Router, channels)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One outbox row as a channel sees it.

    Attributes:
        id: row id (increases with every change; each channel sends in this order).
        channel: ``mqtt``, ``webhook`` or ``telegram:<chat name>``.
        alert_id: the alert's id.
        action: opened, escalated, deescalated, acknowledged or cleared.
        payload: the JSON text to send (:func:`notification_payload`).
        attempts: failed tries so far.
    """

    id: int
    channel: str
    alert_id: int
    action: str
    payload: str
    attempts: int

    @property
    def body(self) -> dict[str, Any]:
        """``payload`` parsed: ``{"notification_id": int, "action": str, "alert": {...}}``."""
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


class Channel(Protocol):
    """A way out for notifications (:class:`analytics.notify_mqtt.MqttChannel`,
    :class:`analytics.notify_webhook.WebhookChannel`)."""

    def send(self, message: OutboxMessage) -> None:
        """Deliver one message; return only once the receiver acknowledged it.

        Raises:
            DeliveryRefused: the receiver refused it for good.
            Exception: anything else means "try again later".
        """

    def close(self) -> None:
        """Release connections."""


def notification_payload(notification_id: int, action: str, alert: dict[str, Any]) -> str:
    """The JSON text every channel sends for one change (compact separators).

    Args:
        notification_id: the change's ``alert_history`` id, the receivers' idempotency key.
        action: opened, escalated, deescalated, acknowledged, cleared or reminder.
        alert: the alert's snapshot after the change (:func:`analytics.alerts.snapshot`); the
            catalogue's words of its type are added beside ``type`` (:func:`lorong.core.alerts.payload_words`:
            ``title`` and ``what_to_do`` in Bahasa Indonesia and English, and the ``role`` that acts on it).
    """
    alert = {**alert, **payload_words(str(alert.get("type")))}
    return json.dumps({"notification_id": notification_id, "action": action, "alert": alert},
                      separators=(",", ":"))


def enqueue(session: Session, channels: Sequence[str | Delivery], alert_id: int, action: str, payload: str,
            now: datetime) -> None:
    """Add one pending row per channel to ``session`` (committed, or rolled back, with the change).

    A row that is not held releases the rows of the same alert and channel still held by quiet
    hours, so they go first (in id order) and the receiver sees the alert's changes in order.

    Args:
        session: the session of the alert change.
        channels: channel names, e.g. ``["mqtt", "webhook"]``, or :class:`Delivery` items.
        alert_id, action: what changed.
        payload: :func:`notification_payload`.
        now: creation time (tz-aware); the rows are due at once (or at their ``not_before``).
    """
    for item in channels:
        d = item if isinstance(item, Delivery) else Delivery(item)
        if d.not_before is None:
            session.execute(update(Row).where(Row.channel == d.channel, Row.alert_id == alert_id,
                                              Row.not_before.is_not(None), _pending())
                            .values(not_before=None).execution_options(synchronize_session=False))
        session.add(Row(channel=d.channel, alert_id=alert_id, action=action, payload=payload, created_at=now,
                        attempts=0, next_attempt_at=now, not_before=d.not_before))


def backoff(attempts: int, base_s: float = 5.0, cap_s: float = 600.0) -> timedelta:
    """Wait before the next try after ``attempts`` failed tries (>= 1): capped exponential backoff,
    ``base_s * 2**(attempts - 1)`` seconds, at most ``cap_s`` (5 s, 10 s, 20 s ... 10 min by default;
    the "exponential backoff" of AWS Architecture Blog, "Exponential Backoff And Jitter", 2015,
    without jitter: one dispatcher per channel makes no thundering herd)."""
    return timedelta(seconds=min(cap_s, base_s * 2.0 ** min(max(attempts - 1, 0), 30)))


def _pending() -> ColumnElement[bool]:
    return and_(Row.sent_at.is_(None), Row.failed_at.is_(None))


def _rowcount(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE; rows it matched."""
    result = cast(CursorResult[Any], session.execute(statement, execution_options={"synchronize_session": False}))
    return int(result.rowcount)


@dataclass
class DispatchReport:
    """What one :meth:`Outbox.dispatch` did, per channel.

    Attributes:
        sent: rows delivered.
        refused: rows the receiver refused for good (now failed).
        deferred: channels stopped by an error, with the error text.
    """

    sent: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """Backlog of one channel.

    Attributes:
        channel: channel name.
        pending: rows not yet delivered and not refused.
        failed: rows refused for good (waiting for ``--retry-failed``).
        oldest_pending_at: ``created_at`` of the oldest pending row, if any.
        oldest_attempts: its failed tries.
        next_attempt_at: when it is due.
        last_error: its last error, if any.
    """

    channel: str
    pending: int
    failed: int
    oldest_pending_at: datetime | None = None
    oldest_attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


class Outbox:
    """Sends, re-queues and purges ``notification_outbox`` rows.

    Args:
        sessions: SQL session factory.
        channels: senders by channel name; rows of other channels are left alone.
        backoff_s, backoff_max_s: :func:`backoff` parameters (seconds).
        retention_days: delivered rows older than this are deleted by :meth:`purge`.
        router: chooses the channels of each change (:attr:`routing`); default all of ``channels``.
    """

    def __init__(self, sessions: sessionmaker[Session], channels: Mapping[str, Channel], backoff_s: float = 5.0,
                 backoff_max_s: float = 600.0, retention_days: float = 7.0, router: Router | None = None) -> None:
        self.sessions = sessions
        self.channels = dict(channels)
        self.router = router
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.retention = timedelta(days=retention_days)
        self._down_since: dict[str, datetime] = {}

    @property
    def names(self) -> list[str]:
        """Channel names."""
        return list(self.channels)

    @property
    def routing(self) -> Router:
        """What :class:`analytics.alerts.AlertBook` writes rows by: the router, or every channel."""
        return self.router if self.router is not None else Broadcast(tuple(self.channels))

    def _claim(self, session: Session, channel: str, now: datetime) -> OutboxMessage | None:
        """Claim the channel's head if it is due (one UPDATE, so two dispatchers cannot both win)."""
        head = (select(func.min(Row.id)).where(Row.channel == channel, _pending(),
                                               or_(Row.not_before.is_(None), Row.not_before <= now))
                ).scalar_subquery()
        got = session.execute(
            update(Row).where(Row.id == head, Row.next_attempt_at <= now, _pending())
            .values(next_attempt_at=now + CLAIM)
            .returning(Row.id, Row.channel, Row.alert_id, Row.action, Row.payload, Row.attempts)
            .execution_options(synchronize_session=False)).first()
        return OutboxMessage(*got) if got is not None else None

    def dispatch(self, now: datetime | None = None, limit: int = 1000, budget_s: float = 60.0) -> DispatchReport:
        """Send every channel's due rows in id order (see the module docstring).

        Args:
            now: the time used for "due", backoff and ``sent_at`` (tz-aware); default the current time.
            limit: at most this many rows per channel.
            budget_s: no new send starts on a channel after this many seconds (wall time).

        Returns:
            A :class:`DispatchReport`.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed (rows already sent stay sent).
        """
        now = now or utcnow()
        report = DispatchReport()
        for name, channel in self.channels.items():
            self._drain(name, channel, now, limit, time.monotonic() + budget_s, report)
        return report

    def _drain(self, name: str, channel: Channel, now: datetime, limit: int, deadline: float,
               report: DispatchReport) -> None:
        with self.sessions.begin() as s:
            msg = self._claim(s, name, now)
        done = 0
        while msg is not None:
            try:
                channel.send(msg)
            except DeliveryRefused as exc:
                log.error("%s refused notification %d (alert %d %s), not retried: %s", name, msg.id, msg.alert_id,
                          msg.action, exc)
                values: dict[str, Any] = {"failed_at": now, "attempts": msg.attempts + 1,
                                          "last_error": str(exc)[:ERROR_CHARS]}
                report.refused[name] = report.refused.get(name, 0) + 1
            except Exception as exc:  # down, timeout, 5xx: every error of the way out means "later"
                self._failed(name, msg, exc, now, report)
                return
            else:
                values = {"sent_at": now}
                report.sent[name] = report.sent.get(name, 0) + 1
            done += 1
            go_on = done < limit and time.monotonic() < deadline
            with self.sessions.begin() as s:
                s.execute(update(Row).where(Row.id == msg.id).values(**values)
                          .execution_options(synchronize_session=False))
                msg = self._claim(s, name, now) if go_on else None
                if not go_on:  # leave the rest for the next round, unclaimed
                    break
        if name in self._down_since and report.sent.get(name):
            log.info("%s notifications flowing again after failing since %s", name,
                     self._down_since.pop(name).isoformat(timespec="seconds"))

    def _failed(self, name: str, msg: OutboxMessage, exc: Exception, now: datetime, report: DispatchReport) -> None:
        attempts = msg.attempts + 1
        wait = backoff(attempts, self.backoff_s, self.backoff_max_s)
        retry_after = getattr(exc, "retry_after_s", None)
        if isinstance(retry_after, (int, float)) and retry_after > 0:
            wait = max(wait, timedelta(seconds=retry_after))
        due = now + wait
        with self.sessions.begin() as s:
            s.execute(update(Row).where(Row.id == msg.id)
                      .values(attempts=attempts, next_attempt_at=due, last_error=f"{exc}"[:ERROR_CHARS] or repr(exc))
                      .execution_options(synchronize_session=False))
        report.deferred[name] = str(exc)
        if name not in self._down_since:
            self._down_since[name] = now
            log.error("%s notifications held back (retried with backoff, nothing is lost): notification %d "
                      "(alert %d %s): %s", name, msg.id, msg.alert_id, msg.action, exc)
        else:
            log.debug("%s still failing (attempt %d, next at %s): %s", name, attempts, due.isoformat(), exc)

    def status(self) -> list[ChannelStatus]:
        """Backlog per channel: every configured channel, and every channel with pending or failed rows.

        Returns:
            one :class:`ChannelStatus` per channel, sorted by name.
        """
        with self.sessions() as s:
            pending = dict(s.execute(select(Row.channel, func.count()).where(_pending()).group_by(Row.channel)).all())
            failed = dict(s.execute(select(Row.channel, func.count())
                                    .where(Row.failed_at.is_not(None), Row.sent_at.is_(None))
                                    .group_by(Row.channel)).all())
            heads = select(func.min(Row.id)).where(_pending()).group_by(Row.channel)
            oldest = {r.channel: r for r in s.scalars(select(Row).where(Row.id.in_(heads)))}
        out = []
        for name in sorted({*self.channels, *pending, *failed}):
            head = oldest.get(name)
            out.append(ChannelStatus(name, int(pending.get(name, 0)), int(failed.get(name, 0)),
                                     head.created_at if head else None, head.attempts if head else 0,
                                     head.next_attempt_at if head else None, head.last_error if head else None))
        return out

    def retry_failed(self, channel: str | None = None, now: datetime | None = None) -> int:
        """Re-queue refused rows (all channels, or one): due at once, attempts back to 0.

        Returns:
            the number of rows re-queued.
        """
        now = now or utcnow()
        q = update(Row).where(Row.failed_at.is_not(None), Row.sent_at.is_(None))
        if channel is not None:
            q = q.where(Row.channel == channel)
        with self.sessions.begin() as s:
            return _rowcount(s, q.values(failed_at=None, attempts=0, next_attempt_at=now))

    def purge(self, now: datetime | None = None) -> int:
        """Delete rows delivered more than ``retention_days`` before ``now``.

        Returns:
            the number of rows deleted.
        """
        cutoff = (now or utcnow()) - self.retention
        with self.sessions.begin() as s:
            return _rowcount(s, delete(Row).where(Row.sent_at < cutoff))

    def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            channel.close()
