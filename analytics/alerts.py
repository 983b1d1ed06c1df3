"""Alert lifecycle on the SQL database (the ThingsBoard alarm model).

An alert has a type, a device, a severity (critical, major, minor, warning) and two independent
states: active/cleared and unacknowledged/acknowledged. At most one *active* alert exists per
device and type (a unique partial index enforces it): raising it again extends it (``count``,
``updated_at``, possibly a new severity). Every change is appended to ``alert_history`` and, in
the same transaction, to ``notification_outbox`` once per notifier channel (MQTT
``lorong/alerts/...``, webhook): :mod:`analytics.outbox` delivers those rows at least once, in order,
after the commit. Notifiers passed as callables (the InfluxDB ``alert_event`` log, tests) are
called once after the commit, best effort.

A clear by a person (any actor but ``system``: a crew or officer token through the API) sticks:
the job does not open the same device and type again until evidence newer than the clear arrives,
i.e. a reading with a time after ``cleared_at`` (for ``offline``: a silence as long as the limit
counted from the clear; ``payload_rejects``: a dead letter received after it; the city's
``pm25_episode``: a reading of a spiking station after it). Readings taken before the clear are
what the person has already seen; see :meth:`AlertBook.cleared_by_hand`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analytics.outbox import Router, as_router, enqueue, notification_payload
from lorong.core.alerts import SEVERITIES
from lorong.core.errors import LorongError
from lorong.core.metrics import shown_details
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow, DeviceRow

log = logging.getLogger(__name__)

SYSTEM = "system"
"""Actor of the job's own changes; a clear by any other actor is a person's (see the module docstring)."""



class AlertNotFound(LorongError):
    """No alert with that id."""


class AlertStateError(LorongError):
    """The requested transition is not allowed (e.g. clearing a cleared alert)."""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One lifecycle change, as published to notifiers.

    Attributes:
        alert_id: database id of the alert.
        action: opened, escalated, deescalated, acknowledged, cleared, or reminder (a critical
            alert nobody acknowledged, sent again: :mod:`analytics.escalation`).
        alert: a JSON-ready snapshot of the alert after the change.
        notification_id: id of the change's ``alert_history`` row: the receivers' idempotency key
            (``None`` only for changes built by hand).
    """

    alert_id: int
    action: str
    alert: dict[str, Any]
    notification_id: int | None = None


Notifier = Callable[[AlertChange], None]


def snapshot(row: AlertRow) -> dict[str, Any]:
    """JSON-ready dict of an alert; times are ISO-8601 with offset, readings in ``details`` rounded as shown
    (:func:`lorong.core.metrics.shown_details`)."""
    def iso(ts: datetime | None) -> str | None:
        return ts.isoformat() if ts else None

    return {
        "id": row.id, "device_id": row.device_id, "kecamatan": row.kecamatan, "city_id": row.city_id, "type": row.type,
        "severity": row.severity, "status": row.status, "acknowledged": row.acknowledged,
        "started_at": iso(row.started_at), "updated_at": iso(row.updated_at), "ack_at": iso(row.ack_at),
        "ack_by": row.ack_by, "cleared_at": iso(row.cleared_at), "cleared_by": row.cleared_by,
        "count": row.count, "details": shown_details(row.details),
    }


def _change_snapshot(row: AlertRow, action: str, details: dict[str, Any]) -> dict[str, Any]:
    """The snapshot a change is notified with: a reminder also carries its history details under
    ``reminder`` (``unacknowledged_min``, ``reminder``: the how-manyth)."""
    snap = snapshot(row)
    if action == "reminder":
        snap["reminder"] = dict(details)
    return snap


class AlertBook:
    """Opens, extends, acknowledges and clears alerts in one session.

    Args:
        session: SQLAlchemy session; the caller commits, then calls :meth:`publish` (and
            :meth:`analytics.outbox.Outbox.dispatch`).
        notifiers: called once per change by :meth:`publish`, best effort.
        channels: outbox channels (``mqtt``, ``webhook``), or a :class:`analytics.outbox.Router`
            choosing them per change: each change adds one ``notification_outbox`` row per
            chosen channel to ``session``.
        clock: creation time of the outbox rows (tz-aware UTC).
    """

    def __init__(self, session: Session, notifiers: Sequence[Notifier] = (), channels: Sequence[str] | Router = (),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.notifiers = list(notifiers)
        self.router = as_router(channels)
        self.channels = self.router.names
        self.clock = clock
        self.changes: list[AlertChange] = []
        self.city: str | None = None
        """The city of the alerts this book opens (a city's analytics run); ``None``: each
        device's own, from the registry."""
        self.city_of: Mapping[str, str | None] = {}
        """Each device's city, when the caller has read them (the analytics run has): a device
        found here needs no registry query when its alert opens."""
        self._active: dict[tuple[str, str], AlertRow] | None = None
        self._hand_clears: dict[tuple[str, str], datetime] = {}
        self._deferred: list[tuple[AlertRow, str, datetime, str, dict[str, Any] | None]] | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Defer the history rows and change snapshots of the block to its end, so that opening
        thousands of alerts costs one flush instead of one per alert (the ids are needed first).
        If the block raises, nothing deferred is recorded."""
        self._deferred = []
        try:
            yield
        except BaseException:
            self._deferred = None
            raise
        pending, self._deferred = self._deferred, None
        if pending:
            self.session.flush()
            history = [AlertHistoryRow(alert_id=row.id, at=at, action=action, actor=actor, details=details or {})
                       for row, action, at, actor, details in pending]
            self.session.add_all(history)
            self.session.flush()  # the history ids are the notification ids
            for (row, action, *_), h in zip(pending, history, strict=True):
                self._changed(AlertChange(row.id, action, _change_snapshot(row, action, h.details), h.id))

    def preload(self, cleared_since: datetime | None = None) -> dict[tuple[str, str], AlertRow]:
        """Load every active alert once; later :meth:`active` calls read this cache (a job that
        checks thousands of devices would otherwise query once per device and rule).

        Args:
            cleared_since: also load the newest clear by a person (actor not ``system``) of each
                device and type cleared after this time, for :meth:`cleared_by_hand` (tz-aware;
                ``None`` loads none).

        Returns:
            ``{(device_id, type): alert}`` of the active alerts (kept up to date by this book).
        """
        rows = self.session.scalars(select(AlertRow).where(AlertRow.status == "active")).all()
        self._active = {(r.device_id, r.type): r for r in rows}
        self._hand_clears = {}
        if cleared_since is not None:
            q = (select(AlertRow.device_id, AlertRow.type, AlertRow.cleared_at)
                 .where(AlertRow.status == "cleared", AlertRow.cleared_by != SYSTEM,
                        AlertRow.cleared_at > cleared_since)
                 .order_by(AlertRow.cleared_at))
            for device_id, type_, at in self.session.execute(q):
                if at is not None:  # ascending: the newest clear wins
                    self._hand_clears[(device_id, type_)] = at
        return self._active

    def cleared_by_hand(self, device_id: str, type_: str) -> datetime | None:
        """When a person last cleared that device's alert of that type (loaded by :meth:`preload`),
        or ``None``; also ``None`` while an alert of that device and type is active.

        The job opens that alert again only on evidence newer than this time.
        """
        if self._active is not None and (device_id, type_) in self._active:
            return None
        return self._hand_clears.get((device_id, type_))

    def active(self, device_id: str, type_: str) -> AlertRow | None:
        """The active alert of that device and type, if any."""
        if self._active is not None:
            return self._active.get((device_id, type_))
        return self.session.scalars(
            select(AlertRow).where(AlertRow.device_id == device_id, AlertRow.type == type_,
                                   AlertRow.status == "active")
        ).first()

    def _record(self, row: AlertRow, action: str, at: datetime, actor: str = "system",
                details: dict[str, Any] | None = None) -> None:
        if self._deferred is not None:
            self._deferred.append((row, action, at, actor, details))
            return
        self.session.flush()
        history = AlertHistoryRow(alert_id=row.id, at=at, action=action, actor=actor, details=details or {})
        self.session.add(history)
        self.session.flush()
        self._changed(AlertChange(row.id, action, _change_snapshot(row, action, history.details), history.id))

    def _changed(self, change: AlertChange) -> None:
        """Keep the change for :meth:`publish` and add its outbox rows to the session."""
        self.changes.append(change)
        if self.channels:
            assert change.notification_id is not None
            now = self.clock()
            deliveries = self.router(change.action, change.alert, now)
            if deliveries:
                enqueue(self.session, deliveries, change.alert_id, change.action,
                        notification_payload(change.notification_id, change.action, change.alert), now)

    def raise_(self, device_id: str, type_: str, severity: str, at: datetime, details: dict[str, Any],
               kecamatan: str = "", actor: str = SYSTEM) -> tuple[AlertRow, str]:
        """Open an alert, or extend the active one of the same device and type.

        ``actor`` is who raised it: ``system`` (the job) or a person's ``role:name`` (a crew's
        "can't empty" report), recorded with the opening and any change of severity.

        Returns:
            the alert and what happened: ``opened``, ``escalated`` (more severe),
            ``deescalated`` (less severe) or ``extended`` (same severity: ``count`` and
            ``updated_at`` move, ``details`` are replaced). Extending is not a state change: it is
            neither in the history nor notified, so a repeated run publishes nothing.

        Raises:
            ValueError: unknown severity.
        """
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        row = self.active(device_id, type_)
        if row is None:
            city = self.city
            if city is None and device_id in self.city_of:
                city = self.city_of[device_id]
            elif city is None:
                device = self.session.get(DeviceRow, device_id)
                city = device.city_id if device is not None else None
            row = AlertRow(device_id=device_id, kecamatan=kecamatan, city_id=city, type=type_, severity=severity,
                           status="active", acknowledged=False, started_at=at, updated_at=at, count=1,
                           details=details)
            self.session.add(row)
            self._record(row, "opened", at, actor, details=details)
            if self._active is not None:
                self._active[(device_id, type_)] = row
            return row, "opened"
        row.count += 1
        row.updated_at = max(row.updated_at, at) if row.updated_at.tzinfo else at
        row.details = details
        if row.severity != severity:
            old, row.severity = row.severity, severity
            action = "escalated" if SEVERITIES.index(severity) < SEVERITIES.index(old) else "deescalated"
            self._record(row, action, at, actor, details={"from": old, "to": severity})
            return row, action
        return row, "extended"

    def clear(self, alert_id: int, at: datetime, actor: str = SYSTEM, reason: str = "") -> AlertRow:
        """Clear an active alert.

        Raises:
            AlertNotFound: no such alert.
            AlertStateError: it is already cleared.
        """
        row = self.get(alert_id)
        if row.status != "active":
            raise AlertStateError(f"alert {alert_id} is already cleared")
        row.status, row.cleared_at, row.cleared_by, row.updated_at = "cleared", at, actor, at
        if self._active is not None:
            self._active.pop((row.device_id, row.type), None)
        if actor != SYSTEM:
            self._hand_clears[(row.device_id, row.type)] = at
        self._record(row, "cleared", at, actor, {"reason": reason} if reason else None)
        return row

    def clear_condition(self, device_id: str, type_: str, at: datetime, reason: str) -> AlertRow | None:
        """Clear the active alert of that device and type when its condition has ended."""
        row = self.active(device_id, type_)
        return self.clear(row.id, at, "system", reason) if row is not None else None

    def acknowledge(self, alert_id: int, at: datetime, actor: str) -> AlertRow:
        """Acknowledge an active alert: someone is on it.

        Raises:
            AlertNotFound: no such alert.
            AlertStateError: it is already acknowledged, or already cleared (nothing is left to be
                on, so an acknowledgement would only add a notification).
        """
        row = self.get(alert_id)
        if row.status != "active":
            raise AlertStateError(f"alert {alert_id} is already cleared; only an active alert can be acknowledged")
        if row.acknowledged:
            raise AlertStateError(f"alert {alert_id} is already acknowledged")
        row.acknowledged, row.ack_at, row.ack_by, row.updated_at = True, at, actor, at
        self._record(row, "acknowledged", at, actor)
        return row

    def remind(self, alert_id: int, at: datetime, details: dict[str, Any]) -> AlertRow:
        """Record a reminder of an active, unacknowledged alert (:mod:`analytics.escalation`): not a
        state change, but a history row and a notification (action ``reminder``) routed to the
        supervisors.

        Raises:
            AlertNotFound: no such alert.
            AlertStateError: it is cleared or acknowledged.
        """
        row = self.get(alert_id)
        if row.status != "active" or row.acknowledged:
            raise AlertStateError(f"alert {alert_id} is {'cleared' if row.status != 'active' else 'acknowledged'}; "
                                  "only an active, unacknowledged alert is escalated")
        self._record(row, "reminder", at, SYSTEM, details)
        return row

    def get(self, alert_id: int) -> AlertRow:
        """The alert with that id.

        Raises:
            AlertNotFound: no such alert.
        """
        row = self.session.get(AlertRow, alert_id)
        if row is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return row

    def publish(self) -> int:
        """Hand the recorded changes to every notifier once (call after commit). Best effort: the
        outbox channels (:mod:`analytics.outbox`) are the delivery that survives outages.

        A failing notifier does not stop the others or the job: its first failure is logged
        with the traceback, the rest are counted in one line.

        Returns:
            the number of failed deliveries.
        """
        changes, self.changes = self.changes, []
        failed: dict[int, int] = {}
        for change in changes:
            for i, notify in enumerate(self.notifiers):
                try:
                    notify(change)
                except Exception:  # a broken webhook must not stop the job
                    if i not in failed:
                        log.exception("notifier %r failed for alert %s %s", notify, change.alert_id, change.action)
                    failed[i] = failed.get(i, 0) + 1
        for i, n in failed.items():
            log.error("notifier %r: %d of %d alert changes not delivered", self.notifiers[i], n, len(changes))
        return sum(failed.values())
