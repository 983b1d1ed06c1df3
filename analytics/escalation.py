"""Escalation: a critical alert nobody acknowledged goes again to the supervisors, on a cadence.

A critical, active, unacknowledged alert gets a reminder (:meth:`analytics.alerts.AlertBook.remind`:
an ``alert_history`` row with action ``reminder`` and its notifications, which
:class:`analytics.notify.NotifyRouter` sends to the supervisor chats and to MQTT and the webhook)
once ``after`` has passed since it became critical (opened critical, or escalated to critical),
then every ``every`` after the last reminder, until someone acknowledges or it clears. Reminders
are kept in the history, so a restarted scheduler neither repeats nor forgets one. Critical
alerts are never held by quiet hours.

The times are Lorong's choice, not a standard: 15 minutes is half of the 30 minutes a crew needs,
on the Makassar demo's routes, to reach a bin across its kecamatan, so a supervisor still has time
to send someone else before a fire or an overflow has burned or spilled for an hour; a reminder
every 30 minutes keeps it in view without burying the supervisor chat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from analytics.alerts import AlertBook
from lorong.core.settings import NotifySettings
from lorong.storage.tables import AlertHistoryRow, AlertRow

log = logging.getLogger(__name__)

CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Escalation:
    """When to remind.

    Attributes:
        after: from the moment an alert became critical to its first reminder.
        every: between two reminders.
    """

    after: timedelta
    every: timedelta

    @classmethod
    def from_settings(cls, n: NotifySettings) -> Escalation:
        """``escalate_after_min`` and ``remind_every_min`` of the settings."""
        return cls(timedelta(minutes=n.escalate_after_min), timedelta(minutes=n.remind_every_min))

    def due(self, critical_since: datetime, last_reminder: datetime | None, now: datetime) -> bool:
        """Whether an unacknowledged critical alert needs a reminder at ``now`` (all tz-aware)."""
        if last_reminder is None or last_reminder < critical_since:
            return now >= critical_since + self.after
        return now >= last_reminder + self.every


def remind(session: Session, book: AlertBook, policy: Escalation, now: datetime) -> list[int]:
    """Record a reminder for every critical alert that is due (see the module docstring); the
    caller commits.

    Args:
        session: the book's session.
        book: records the reminders (and their outbox rows).
        policy: when.
        now: the time of the check (tz-aware); the reminders are dated ``now``.

    Returns:
        The ids of the alerts reminded, ascending.
    """
    rows = session.scalars(select(AlertRow).where(AlertRow.status == "active", AlertRow.severity == CRITICAL,
                                                  AlertRow.acknowledged.is_(False)).order_by(AlertRow.id)).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    became = dict(session.execute(
        select(AlertHistoryRow.alert_id, func.max(AlertHistoryRow.at))
        .where(AlertHistoryRow.alert_id.in_(ids), AlertHistoryRow.action.in_(("opened", "escalated")))
        .group_by(AlertHistoryRow.alert_id)).tuples().all())
    reminded = dict(session.execute(
        select(AlertHistoryRow.alert_id, func.max(AlertHistoryRow.at))
        .where(AlertHistoryRow.alert_id.in_(ids), AlertHistoryRow.action == "reminder")
        .group_by(AlertHistoryRow.alert_id)).tuples().all())
    done = []
    for row in rows:
        since = _aware(became.get(row.id) or row.started_at, now)
        last = reminded.get(row.id)
        last = _aware(last, now) if last is not None else None
        if policy.due(since, last, now):
            n = 1 + _count(session, row.id, since)
            book.remind(row.id, now, {"unacknowledged_min": round((now - since).total_seconds() / 60),
                                      "reminder": n})
            done.append(row.id)
    if done:
        log.info("reminded the supervisors of %d unacknowledged critical alert(s): %s", len(done), done)
    return done


def _count(session: Session, alert_id: int, since: datetime) -> int:
    """Reminders of an alert since it became critical."""
    return int(session.scalar(select(func.count()).where(AlertHistoryRow.alert_id == alert_id,
                                                         AlertHistoryRow.action == "reminder",
                                                         AlertHistoryRow.at >= since)) or 0)


def _aware(ts: datetime, like: datetime) -> datetime:
    """SQLite returns naive UTC datetimes: give them ``like``'s zone (UTC)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=like.tzinfo)
