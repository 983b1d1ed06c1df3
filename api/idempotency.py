"""Exactly-once POSTs: the ``Idempotency-Key`` request header (IETF draft
``draft-ietf-httpapi-idempotency-key-header``).

A phone in an alley queues what its crew does and sends it when it is back online; a request whose
answer was lost on the way is sent again. With the same key (made on the phone, one per action) and
the same token, the change is applied once and every repeat gets the first answer, marked
``Idempotent-Replayed: true``. The key row is written in the transaction of the change, so either
both are stored or neither; two repeats racing each other collide on the unique ``(token_id, key)``
and the loser answers with the winner's stored response.

A key reused for another method or path is a 422 (the draft's "reuse of key for a different
request"). Errors (4xx) are not stored: a repeat of a refused request is judged again. Keys are
kept :data:`KEEP` (a token's older keys are dropped when it stores a new one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import Principal
from api.errors import InvalidRequest
from lorong.core.model import utcnow
from lorong.storage.tables import IdempotencyKeyRow

KEEP = timedelta(days=7)
"""How long a key is remembered: far longer than a phone stays offline with a day's route
(``POST /bins/{id}/emptied`` refuses actions older than 24 h)."""

KEY_PATTERN = r"^[A-Za-z0-9._:-]{8,64}$"
"""What a key may look like: 8-64 URL-safe characters (a UUID fits)."""

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", pattern=KEY_PATTERN,
    description="a key the client makes for this one action (a UUID): a repeat with the same key is applied once")]

REPLAYED = "Idempotent-Replayed"


def _stored(session: Session, who: Principal, key: str) -> IdempotencyKeyRow | None:
    return session.scalars(select(IdempotencyKeyRow).where(IdempotencyKeyRow.token_id == who.token_id,
                                                           IdempotencyKeyRow.key == key)).first()


def _replay(row: IdempotencyKeyRow, request: Request) -> JSONResponse:
    if row.method != request.method or row.path != request.url.path:
        raise InvalidRequest(f"Idempotency-Key {row.key!r} was used for {row.method} {row.path}: "
                             "make a new key for every action")
    return JSONResponse(row.response, status_code=row.status, headers={REPLAYED: "true"})


def once(session: Session, who: Principal, key: str | None, request: Request,
         apply: Callable[[], dict[str, Any]], status: int = 200) -> tuple[JSONResponse, bool]:
    """Apply a change once per ``key`` and commit it.

    Args:
        session: the request's session; ``apply`` makes its changes here, uncommitted.
        who: the caller (keys are per token).
        key: the ``Idempotency-Key`` header, or ``None`` (then every call applies).
        request: the request (its method and path are stored with the key).
        apply: makes the change and returns the JSON-ready response body; its errors propagate
            and nothing is stored.
        status: the HTTP status of a first answer.

    Returns:
        the response, and ``True`` when it is a replay (nothing new was applied: the caller then
        skips its after-commit work, such as notifying).
    """
    if key is not None:
        row = _stored(session, who, key)
        if row is not None:
            return _replay(row, request), True
    body = apply()
    if key is not None:
        now = utcnow()
        session.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.token_id == who.token_id,
                                                        IdempotencyKeyRow.created_at < now - KEEP))
        session.add(IdempotencyKeyRow(token_id=who.token_id, key=key, method=request.method,
                                      path=request.url.path[:256], status=status, response=body,
                                      created_at=now))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        row = _stored(session, who, key) if key is not None else None
        if row is None:
            raise
        return _replay(row, request), True
    return JSONResponse(body, status_code=status), False
