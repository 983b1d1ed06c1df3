"""The dead-letter store: every rejected message with its topic, raw payload, reason and time.

Kept in the SQL database (table ``dead_letters``) so that ``lorong ingest dead-letters list``
shows them and ``replay`` re-processes them after a fix (a new codec, a registered device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lorong.storage.tables import DeadLetterRow

KEEP_OF_TOO_LARGE = 65536
"""Bytes kept of a payload refused as ``too_large``: it can never be replayed (it stays over the
limit), and kept whole one 30 MB publish made a 30 MB database row; the detail keeps its size."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message: ``reason`` is the short code, ``detail`` the explanation, ``device_id``
    the sender when the payload or the topic names one (what the ``payload_rejects`` rule counts by)."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: datetime
    device_id: str | None = None


class DeadLetterStore:
    """Dead letters in the SQL database.

    Args:
        sessions: session factory of the Lorong database.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add_many(self, letters: Sequence[DeadLetter]) -> None:
        """Durably store ``letters`` in one transaction (synced on SQLite, see
        :func:`lorong.storage.db.make_engine`; PostgreSQL's default ``synchronous_commit=on``); of a
        ``too_large`` payload the first :data:`KEEP_OF_TOO_LARGE` bytes."""
        if not letters:
            return
        with self._sessions.begin() as s:
            s.add_all(
                DeadLetterRow(topic=d.topic, payload=d.payload[:KEEP_OF_TOO_LARGE] if d.reason == "too_large"
                              else d.payload, reason=d.reason, detail=d.detail[:2000],
                              received_at=d.received_at, device_id=d.device_id[:64] if d.device_id else None)
                for d in letters
            )

    def list(self, reason: str | None = None, limit: int = 100, pending_only: bool = True) -> list[DeadLetterRow]:
        """Newest dead letters first, optionally only one reason and only not yet replayed."""
        q = select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(limit)
        if reason:
            q = q.where(DeadLetterRow.reason == reason)
        if pending_only:
            q = q.where(DeadLetterRow.replayed_at.is_(None))
        with self._sessions() as s:
            return list(s.scalars(q).all())

    def count(self, pending_only: bool = False) -> int:
        """Number of dead letters."""
        q = select(func.count()).select_from(DeadLetterRow)
        if pending_only:
            q = q.where(DeadLetterRow.replayed_at.is_(None))
        with self._sessions() as s:
            return int(s.scalar(q) or 0)

    def counts_by_reason(self, replayed: bool | None = None) -> dict[str, int]:
        """Dead letters per reason code: all (``replayed`` None), only pending ones (False) or only
        replayed ones (True)."""
        q = select(DeadLetterRow.reason, func.count()).group_by(DeadLetterRow.reason)
        if replayed is not None:
            q = q.where(DeadLetterRow.replayed_at.is_not(None) if replayed else DeadLetterRow.replayed_at.is_(None))
        with self._sessions() as s:
            return {r: int(n) for r, n in s.execute(q).all()}

    def mark_replayed(self, ids: Sequence[int], at: datetime) -> None:
        """Record that these dead letters were re-processed successfully."""
        with self._sessions.begin() as s:
            for row in s.scalars(select(DeadLetterRow).where(DeadLetterRow.id.in_(list(ids)))):
                row.replayed_at = at
