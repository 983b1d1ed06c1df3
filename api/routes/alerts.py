"""``/alerts``: list with filters and keyset pagination; acknowledge and clear (crew and admin).

Pagination is keyset on ``(started_at, id)``, newest first: a page ends at the last item's key and
the next page starts strictly after it, so an item never repeats and never goes missing however
many alerts open, change or clear in between (an alert cleared meanwhile simply leaves an
``active`` listing). The cursor is opaque to clients: URL-safe base64 of that key. When there is
a next page the response carries it in ``X-Next-Cursor`` and in a ``Link: <...>; rel="next"``
header (RFC 8288).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Path, Query, Request, Response
from sqlalchemy import Select, and_, or_, select

from analytics.alerts import AlertBook, snapshot
from api.deps import DEVICE_ID_PATTERN, AlertWriter, ContextDep, Reader, SessionDep
from api.errors import InvalidRequest
from api.schemas import CONFLICT, ERRORS, NOT_FOUND, AlertOut, ClearIn
from core.model import utcnow
from storage.tables import AlertRow

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERRORS)

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="alert id")]

PAGE_HEADERS = {
    "X-Next-Cursor": {"description": "cursor of the next page (absent on the last page)", "schema": {"type": "string"}},
    "Link": {"description": "RFC 8288 link to the next page, rel=\"next\"", "schema": {"type": "string"}},
}


def encode_cursor(started_at: datetime, alert_id: int) -> str:
    """Opaque cursor for the key ``(started_at, id)`` of the last item of a page."""
    raw = json.dumps([started_at.isoformat(), alert_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The key in a cursor made by :func:`encode_cursor`.

    Raises:
        InvalidRequest: not such a cursor.
    """
    try:
        started, alert_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts = datetime.fromisoformat(started)
        if ts.tzinfo is None or not isinstance(alert_id, int) or isinstance(alert_id, bool):
            raise ValueError(cursor)
        return ts, alert_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API gave out: start again without a cursor") from None


def _after(q: Select[AlertRow], cursor: str | None) -> Select[AlertRow]:
    if cursor is None:
        return q
    ts, alert_id = decode_cursor(cursor)
    return q.where(or_(AlertRow.started_at < ts, and_(AlertRow.started_at == ts, AlertRow.id < alert_id)))


@router.get("", response_model=list[AlertOut], responses={200: {"headers": PAGE_HEADERS}})
def alerts(
    request: Request,
    response: Response,
    session: SessionDep,
    _who: Reader,
    status: Literal["active", "cleared", "any"] = Query("active", description="active (default), cleared or any"),
    type: str | None = Query(None, max_length=32, description="bin_full, pm25_high ..."),
    severity: Literal["critical", "major", "minor", "warning"] | None = None,
    kecamatan: str | None = Query(None, max_length=64),
    acknowledged: bool | None = Query(None, description="only acknowledged (true) or unacknowledged (false)"),
    device_id: str | None = Query(None, pattern=DEVICE_ID_PATTERN),
    limit: int = Query(100, ge=1, le=500),
    cursor: str | None = Query(None, max_length=200, description="X-Next-Cursor of the previous page"),
) -> list[AlertOut]:
    """Alerts newest first (by ``started_at``, then id), one page at a time."""
    q = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id.desc())
    if status != "any":
        q = q.where(AlertRow.status == status)
    for column, value in ((AlertRow.type, type), (AlertRow.severity, severity), (AlertRow.kecamatan, kecamatan),
                          (AlertRow.acknowledged, acknowledged), (AlertRow.device_id, device_id)):
        if value is not None:
            q = q.where(column == value)
    rows = list(session.scalars(_after(q, cursor).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1].started_at, rows[-1].id)
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", nxt)]
        response.headers["X-Next-Cursor"] = nxt
        response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return [AlertOut.model_validate(snapshot(r)) for r in rows]


@router.get("/{alert_id}", response_model=AlertOut, responses=NOT_FOUND)
def alert(alert_id: AlertId, session: SessionDep, _who: Reader) -> AlertOut:
    """One alert."""
    return AlertOut.model_validate(snapshot(AlertBook(session).get(alert_id)))


@router.post("/{alert_id}/ack", response_model=AlertOut, responses={**NOT_FOUND, **CONFLICT})
def acknowledge(alert_id: AlertId, ctx: ContextDep, session: SessionDep, who: AlertWriter) -> AlertOut:
    """Acknowledge an alert (crew or admin): someone is on it. 409 if it is already acknowledged."""
    book = AlertBook(session, ctx.notifiers)
    row = book.acknowledge(alert_id, utcnow(), who.actor)
    session.commit()
    book.publish()
    return AlertOut.model_validate(snapshot(row))


@router.post("/{alert_id}/clear", response_model=AlertOut, responses={**NOT_FOUND, **CONFLICT})
def clear(alert_id: AlertId, ctx: ContextDep, session: SessionDep, who: AlertWriter,
          body: Annotated[ClearIn | None, Body()] = None) -> AlertOut:
    """Clear an active alert (crew or admin), e.g. after emptying the bin. 409 if already cleared."""
    book = AlertBook(session, ctx.notifiers)
    row = book.clear(alert_id, utcnow(), who.actor, body.reason if body else "")
    session.commit()
    book.publish()
    return AlertOut.model_validate(snapshot(row))
