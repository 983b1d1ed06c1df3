"""``/alerts``: list with filters and keyset pagination; the type catalogue; history; acknowledge and
clear (by the role that acts on the alert's type, :func:`lorong.core.alerts.may_act`).

An acknowledgement or clear is queued for MQTT and the webhook in the transaction of the change
(:mod:`analytics.outbox`); the analytics scheduler sends it within one tick.

Pagination and the active-alert snapshot are described in :mod:`api.alert_state`. When there is a
next page the response carries its cursor in ``X-Next-Cursor`` and in a ``Link: <...>; rel="next"``
header (RFC 8288).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic_core import to_json
from sqlalchemy import select
from sqlalchemy.orm import Session

from analytics.alerts import AlertBook, AlertNotFound, snapshot
from analytics.notify import city_zones, outbox_channels
from api.alert_state import AlertFilter, decode_cursor, encode_cursor, location, query_page, snapshot_page
from api.auth import Principal
from api.deps import DEVICE_ID_PATTERN, AlertWriter, ContextDep, Reader, SessionDep
from api.errors import InvalidRequest
from api.idempotency import IdempotencyKey, once
from api.query import one_of, resolve_city_in, resolve_device_in, resolve_kecamatan_in
from api.schemas import CONFLICT, ERRORS, NOT_FOUND, AlertHistoryOut, AlertOut, AlertTypesOut, ClearIn
from lorong.core.alerts import ALERT_TYPES, CANT_EMPTY_WORDS, SEVERITY_WORDS
from lorong.core.metrics import shown_details
from lorong.core.model import utcnow
from lorong.storage.tables import AlertHistoryRow, AlertRow

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERRORS)

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="alert id")]

PAGE_HEADERS = {
    "X-Next-Cursor": {"description": "cursor of the next page (absent on the last page)", "schema": {"type": "string"}},
    "Link": {"description": "RFC 8288 link to the next page, rel=\"next\"", "schema": {"type": "string"}},
}


@router.get("", response_model=list[AlertOut], responses={200: {"headers": PAGE_HEADERS}})
async def alerts(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    who: Reader,
    status: Literal["active", "cleared", "any"] = Query("active", description="active (default), cleared or any"),
    type: Annotated[str | None, Query(max_length=32, description="alert type: one of GET /alerts/types",
                                      json_schema_extra={"enum": list(ALERT_TYPES)}), one_of(ALERT_TYPES)] = None,
    severity: Literal["critical", "major", "minor", "warning"] | None = None,
    kecamatan: str | None = Query(None, max_length=64),
    acknowledged: bool | None = Query(None, description="only acknowledged (true) or unacknowledged (false)"),
    device_id: str | None = Query(None, pattern=DEVICE_ID_PATTERN),
    city: str | None = Query(None, max_length=64, description="only this city's alerts (a city's token: its own)"),
    limit: int = Query(100, ge=1, le=500),
    cursor: str | None = Query(None, max_length=200, description="X-Next-Cursor of the previous page"),
) -> Response:
    """Alerts newest first (by ``started_at``, then id), one page at a time; for a token scoped to a
    city, those of its city only (``city``: one city's, for a token of every city; another city's: 403;
    one not registered: 422); for a token with an area, those of its area only (``kecamatan``
    outside it: 403). ``kecamatan``, ``city`` and ``device_id`` are compared without case; a value
    nothing has is a 422 (:mod:`api.query`).

    Active alerts come from a snapshot at most a few seconds old (:mod:`api.alert_state`); the
    others from SQL in a worker thread.
    """
    city = await resolve_city_in(ctx.sessions, who.city, city)
    if kecamatan:
        kecamatan = await resolve_kecamatan_in(ctx.sessions, kecamatan, city)
        who.require_filter(kecamatan)
    if device_id is not None:
        device_id = await resolve_device_in(ctx.sessions, device_id, who.city)
    f = AlertFilter(None if status == "any" else status, type, severity, kecamatan, acknowledged, device_id,
                    city_id=city, area=who.area)
    after = decode_cursor(cursor) if cursor is not None else None

    def render(rows: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        headers: dict[str, str] = {}
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1]["started_at"], rows[-1]["id"])
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", nxt)]
            headers["X-Next-Cursor"] = nxt
            headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
        return to_json(rows), headers

    encoding = request.headers.get("accept-encoding", "")
    if status == "active":
        alerts = await ctx.alerts.aitems()
        return ctx.pages.respond(("alerts", f, after, limit), alerts, encoding,
                                 lambda: render(snapshot_page(alerts, f, after, limit + 1)))
    body, headers = render(await run_in_threadpool(query_page, session, f, after, limit + 1))
    return Response(body, media_type="application/json", headers=headers)


@router.get("/types", response_model=AlertTypesOut)
def alert_types(_who: Reader) -> AlertTypesOut:
    """The catalogue of alert types (:mod:`lorong.core.alerts`): severities, the role that acts on each, and
    their words in Bahasa Indonesia and English; with the words of the "can't empty" reasons and of the
    severities."""
    return AlertTypesOut.model_validate({"types": [t.as_dict() for t in ALERT_TYPES.values()],
                                         "cant_empty_reasons": CANT_EMPTY_WORDS, "severity_words": SEVERITY_WORDS})


def scoped_alert(book: AlertBook, who: Principal, alert_id: int) -> AlertRow:
    """The alert ``alert_id`` when ``who``'s token sees its city.

    Raises:
        AlertNotFound: no such alert, or one of another city (the same 404).
    """
    row = book.get(alert_id)
    if not who.sees(row.city_id):
        raise AlertNotFound(f"no alert {alert_id}")
    return row


def alert_out(session: Session, row: AlertRow) -> dict[str, Any]:
    """An alert with its device's location, JSON-ready (:class:`AlertOut`)."""
    return AlertOut.model_validate({**snapshot(row), **location(session, row.device_id)}).model_dump(mode="json")


def in_area(book: AlertBook, alert_id: int, who: Principal) -> AlertRow:
    """The alert ``alert_id``, if it is in the city and the area of ``who``'s token.

    Raises:
        AlertNotFound: no such alert, or one of another city (404, :func:`scoped_alert`).
        Forbidden: it is outside the token's area (403).
    """
    row = scoped_alert(book, who, alert_id)
    who.require_area(row.kecamatan, f"alert {alert_id}")
    return row


@router.get("/{alert_id}", response_model=AlertOut, responses=NOT_FOUND)
def alert(alert_id: AlertId, session: SessionDep, who: Reader) -> dict[str, Any]:
    """One alert, with its device's location (404 for another city's, 403 outside the token's area)."""
    return alert_out(session, in_area(AlertBook(session), alert_id, who))


@router.get("/{alert_id}/history", response_model=list[AlertHistoryOut], responses=NOT_FOUND)
def history(alert_id: AlertId, session: SessionDep, who: Reader) -> list[AlertHistoryOut]:
    """Who did what to an alert, when and why, oldest first (404 for another city's alert, 403 outside
    the token's area)."""
    in_area(AlertBook(session), alert_id, who)
    rows = session.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id == alert_id)
                           .order_by(AlertHistoryRow.at, AlertHistoryRow.id))
    return [AlertHistoryOut(at=r.at, action=r.action, actor=r.actor, reason=str((r.details or {}).get("reason", "")),
                            details=shown_details(r.details)) for r in rows]


@router.post("/{alert_id}/ack", response_model=AlertOut, responses={**NOT_FOUND, **CONFLICT})
def acknowledge(alert_id: AlertId, request: Request, ctx: ContextDep, session: SessionDep, who: AlertWriter,
                key: IdempotencyKey = None) -> Response:
    """Acknowledge an active alert: someone is on it. Only a role that acts on the alert's type may
    (:func:`lorong.core.alerts.may_act`; 403 otherwise). 409 if it is already acknowledged or already cleared
    (a cleared alert has nothing left to be on, so its ack would only add noise); 403 outside the
    token's area. A repeat with the
    same ``Idempotency-Key`` returns the first answer and changes nothing (:mod:`api.idempotency`)."""
    # the scheduler sends them
    book = AlertBook(session, ctx.notifiers, outbox_channels(ctx.settings, city_zones(session)))

    def apply() -> dict[str, Any]:
        who.require_act(in_area(book, alert_id, who).type)
        return alert_out(session, book.acknowledge(alert_id, utcnow(), who.actor))

    response, replayed = once(session, who, key, request, apply)
    if not replayed:
        ctx.alerts.invalidate()
        book.publish()
    return response


@router.post("/{alert_id}/clear", response_model=AlertOut, responses={**NOT_FOUND, **CONFLICT})
def clear(alert_id: AlertId, request: Request, ctx: ContextDep, session: SessionDep, who: AlertWriter,
          body: Annotated[ClearIn | None, Body()] = None, key: IdempotencyKey = None) -> Response:
    """Clear an active alert, e.g. after emptying the bin; ``reason`` (required, not blank: 422) goes into
    its history. Only a role that acts on the alert's type may, in the token's area (403 otherwise); 409 if
    already cleared. Idempotent by ``Idempotency-Key`` as the acknowledgement."""
    if body is None:
        raise InvalidRequest('a clear needs a reason: send {"reason": "emptied"} (or "false alarm", ...)')
    reason = body.reason
    # the scheduler sends them
    book = AlertBook(session, ctx.notifiers, outbox_channels(ctx.settings, city_zones(session)))

    def apply() -> dict[str, Any]:
        who.require_act(in_area(book, alert_id, who).type)
        return alert_out(session, book.clear(alert_id, utcnow(), who.actor, reason))

    response, replayed = once(session, who, key, request, apply)
    if not replayed:
        ctx.alerts.invalidate()
        book.publish()
    return response
