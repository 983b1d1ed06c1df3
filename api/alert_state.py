"""Alert listing: keyset pages on ``(started_at, id)``, from SQL or from a snapshot of the active alerts.

Crews' pages poll the *active* alerts over and over, so those are kept as a
:class:`api.snapshot.Snapshot` (``ttl_s`` 2 s, ``max_age_s`` 10 s; acknowledging or clearing through
this API invalidates it). Cleared and ``any`` listings always query SQL. Both paths give the same
order and the same pages.

Keyset pagination: newest first by ``started_at``, then id. A page ends at the last item's key and
the next page starts strictly after it, so an item never repeats and never goes missing however
many alerts open, change or clear in between (an alert cleared meanwhile just leaves an ``active``
listing). The cursor is opaque to clients: URL-safe base64 of that key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.errors import InvalidRequest
from api.schemas import AlertOut
from api.snapshot import Snapshot
from lorong.core.metrics import shown_details
from lorong.storage.tables import AlertRow, DeviceRow

LOCATION_FIELDS = ("kelurahan", "street", "landmark", "lat", "lon")
"""Where the alert's device is, from the registry (empty or null for the city's pseudo-device)."""


def _column(name: str) -> ColumnElement[Any]:
    if name not in LOCATION_FIELDS:
        return AlertRow.__table__.c[name]
    col = DeviceRow.__table__.c[name]
    return (col if name in ("lat", "lon") else func.coalesce(col, "")).label(name)


ALERT_COLUMNS = tuple(_column(name) for name in AlertOut.model_fields)
"""The columns of :class:`AlertOut` in its field order: the ``alerts`` row and its device's location
(pages are served as dicts)."""


def location(session: Session, device_id: str) -> dict[str, Any]:
    """The :data:`LOCATION_FIELDS` of a device (empty for an unknown one, such as ``city``)."""
    row = session.get(DeviceRow, device_id)
    return {name: getattr(row, name) if row is not None else (None if name in ("lat", "lon") else "")
            for name in LOCATION_FIELDS}

Key = tuple[datetime, int]

MAX_ID = 2**63 - 1
"""Largest alert id a cursor may carry: SQLite's and PostgreSQL's signed 64-bit integer (a larger one
raised ``OverflowError`` when bound to the query)."""


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What a listing asks for; ``None`` means any. ``area``: only alerts in these kecamatan
    (a token's area, :attr:`api.auth.Principal.area`); empty means the whole city."""

    status: str | None = "active"
    type: str | None = None
    severity: str | None = None
    kecamatan: str | None = None
    acknowledged: bool | None = None
    device_id: str | None = None
    city_id: str | None = None
    """The city of a token scoped to one (:attr:`api.auth.Principal.city`)."""
    area: tuple[str, ...] = ()

    def checks(self) -> list[tuple[str, Any]]:
        """``[(field, wanted value)]`` of the filters that are set."""
        fields = ("status", "type", "severity", "kecamatan", "acknowledged", "device_id", "city_id")
        return [(name, getattr(self, name)) for name in fields if getattr(self, name) is not None]


def encode_cursor(started_at: datetime, alert_id: int) -> str:
    """Opaque cursor for the key ``(started_at, id)`` of the last item of a page."""
    raw = json.dumps([started_at.isoformat(), alert_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """The key in a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidRequest: not such a cursor (also an id outside 0..:data:`MAX_ID`, which no alert has).
    """
    try:
        started, alert_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts = datetime.fromisoformat(started)
        if (ts.tzinfo is None or not isinstance(alert_id, int) or isinstance(alert_id, bool)
                or not 0 <= alert_id <= MAX_ID):
            raise ValueError(cursor)
        return ts, alert_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API gave out: start again without a cursor") from None


def _query(f: AlertFilter, after: Key | None) -> Select[Any]:
    q = (select(*ALERT_COLUMNS).outerjoin(DeviceRow, DeviceRow.id == AlertRow.device_id)
         .order_by(AlertRow.started_at.desc(), AlertRow.id.desc()))
    for column, value in ((AlertRow.status, f.status), (AlertRow.type, f.type), (AlertRow.severity, f.severity),
                          (AlertRow.kecamatan, f.kecamatan), (AlertRow.acknowledged, f.acknowledged),
                          (AlertRow.device_id, f.device_id), (AlertRow.city_id, f.city_id)):
        if value is not None:
            q = q.where(column == value)
    if f.area:
        q = q.where(AlertRow.kecamatan.in_(f.area))
    if after is not None:
        ts, alert_id = after
        q = q.where(or_(AlertRow.started_at < ts, and_(AlertRow.started_at == ts, AlertRow.id < alert_id)))
    return q


def query_page(session: Session, f: AlertFilter, after: Key | None, limit: int,
               pause: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """Up to ``limit`` alerts after ``after`` (newest first) from SQL, as :class:`AlertOut` dicts.

    ``pause()`` is called after every 100 rows (see :mod:`api.snapshot`).
    """
    out: list[dict[str, Any]] = []
    for part in session.execute(_query(f, after).limit(limit)).mappings().partitions(100):
        out.extend({**r, "details": shown_details(r["details"])} for r in part)  # readings rounded as shown
        pause()
    return out


def active_snapshot(sessions: sessionmaker[Session], ttl_s: float = 2.0, max_age_s: float = 10.0
                    ) -> Snapshot[dict[str, Any]]:
    """A snapshot of every active alert, newest first, as :class:`AlertOut` dicts."""

    def load(pause: Callable[[], None]) -> list[dict[str, Any]]:
        with sessions() as s:
            return query_page(s, AlertFilter(), None, 1_000_000, pause)

    return Snapshot("active-alerts", load, ttl_s, max_age_s)


def snapshot_page(alerts: list[dict[str, Any]], f: AlertFilter, after: Key | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` snapshot alerts after ``after`` that match ``f`` (``alerts`` sorted newest first)."""
    out: list[dict[str, Any]] = []
    checks = f.checks()
    for a in alerts:
        if after is not None and (a["started_at"], a["id"]) >= after:
            continue
        if all(a[name] == want for name, want in checks) and (not f.area or a["kecamatan"] in f.area):
            out.append(a)
            if len(out) >= limit:
                break
    return out
