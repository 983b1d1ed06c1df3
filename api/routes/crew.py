"""What a crew does at a bin, and who the caller is.

- ``GET /me``: the token's name, role and area, and the alert types it acts on (the page shows only
  those and offers buttons only where they will work); its city, map centre and time zone.
- ``POST /bins/{id}/emptied``: a person emptied the bin. Records a collection (``source`` crew, the
  token's ``role:name`` as actor, the latest fill level before) and clears the bin's active alerts
  of the types the catalogue marks ``cleared_by_emptying`` (``bin_full``, ``bin_full_soon``,
  ``cant_empty``) with the reason "emptied by <actor>".
- ``POST /bins/{id}/cant-empty``: a person could not empty it (blocked, not_found, damaged,
  sensor_broken). Raises the ``cant_empty`` alert (:data:`lorong.core.alerts.CANT_EMPTY`), which the
  supervisor role acts on, with the reason and the reporter in its details and history.

Both are refused (403) for a bin outside the token's area, and (409) for a bin out of service (registry
status not ``active``: in stock or in maintenance). Both take an ``Idempotency-Key``
(:mod:`api.idempotency`): the page makes one per action on the phone, so an action queued offline
and sent twice is applied once. ``at`` is when it happened by the phone's clock (an action queued
offline is sent later); it may lie at most :data:`MAX_AGE` in the past and :data:`MAX_SKEW` in the
future.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from analytics.alerts import AlertBook
from analytics.notify import city_zones, outbox_channels
from analytics.pickups import SAME_EMPTYING
from api.auth import Permission, Principal
from api.deps import Collector, ContextDep, DeviceId, Reader, SessionDep, scoped_device
from api.errors import Conflict, InvalidRequest, NotFound
from api.idempotency import IdempotencyKey, once
from api.routes.alerts import alert_out
from api.schemas import CONFLICT, ERRORS, NOT_FOUND, AlertOut, Utc
from api.state import iso_time, metric_value
from lorong.core import alerts as catalogue
from lorong.core.metrics import shown
from lorong.core.model import DeviceKind, utcnow
from lorong.storage.tables import CityRow, CollectionRow, DeviceLatestRow, DeviceRow

router = APIRouter(tags=["crew"], responses=ERRORS)

EMPTYING_CLEARS = tuple(t.name for t in catalogue.ALERT_TYPES.values() if t.cleared_by_emptying)
"""Alert types an emptied bin no longer has (``bin_full``, ``bin_full_soon``, ``cant_empty``)."""

MAX_AGE = timedelta(hours=24)
"""Oldest ``at`` accepted: a phone offline for longer has a day's plan that no longer holds."""
MAX_SKEW = timedelta(minutes=5)
"""How far ahead of the server a phone's clock may run."""


class MeOut(BaseModel):
    """The caller: token name and role, and what it may do."""

    name: str
    role: str
    acts_on: list[str] = Field(description="alert types this role acknowledges and clears (GET /alerts/types)")
    may_collect: bool = Field(description="may report a bin emptied or not emptiable")
    city: str | None = Field(None, description="the one city the token sees (cities.id); null: every city")
    centre: list[float] | None = Field(None, description="that city's map centre [lat, lon], WGS84 degrees; "
                                       "null when the token sees every city or the city has none")
    area: list[str] = Field(description="kecamatan this token sees and acts on; empty for the whole city")
    timezone: str = Field(description="IANA zone of the token's city (cities.timezone), the deployment's "
                          "default (analytics.timezone) for a token of every city: the page shows times in it")


class EmptiedIn(BaseModel):
    """``POST /bins/{id}/emptied``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not dropped

    at: AwareDatetime | None = Field(None, description="when it was emptied (phone clock); default now")
    note: str = Field("", max_length=200)


class EmptiedOut(BaseModel):
    """A collection reported by a person, and the alerts it cleared."""

    collection_id: int
    device_id: str
    at: Utc
    actor: str
    level_before: float | None = Field(None, description="latest fill level before, fraction 0..1 [1]",
                                       json_schema_extra={"x-unit": "1"})
    cleared: list[int] = Field(description="ids of the alerts cleared")


class CantEmptyIn(BaseModel):
    """``POST /bins/{id}/cant-empty``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not dropped

    reason: Literal["blocked", "not_found", "damaged", "sensor_broken"]
    note: str = Field("", max_length=200)
    at: AwareDatetime | None = Field(None, description="when it was found (phone clock); default now")


def _when(at: datetime | None, now: datetime) -> datetime:
    if at is None:
        return now
    if at > now + MAX_SKEW or at < now - MAX_AGE:
        raise InvalidRequest(f"at={at.isoformat()} is not within the last {MAX_AGE.total_seconds() / 3600:g} h: "
                             "check the phone's clock")
    return min(at, now)


def _bin(session: SessionDep, who: Principal, device_id: str) -> DeviceRow:
    row = scoped_device(session, who, device_id)
    if row.kind != DeviceKind.BIN.value:
        raise NotFound(f"{row.id} is an air station, not a bin")
    who.require_area(row.kecamatan, f"bin {row.id}")
    if row.status != "active":
        raise Conflict(f"bin {row.id} is out of service (status {row.status}): only an active bin can be emptied "
                       "or reported")
    return row


@router.get("/me", response_model=MeOut)
def me(who: Reader, session: SessionDep, ctx: ContextDep) -> MeOut:
    """Who holds this token, what it may act on, and its city with the map centre the crew page opens on
    and the time zone it shows times in."""
    city = session.get(CityRow, who.city) if who.city is not None else None
    centre = [city.centre_lat, city.centre_lon] if city is not None and city.centre_lat is not None else None
    return MeOut(name=who.name, role=who.role.value,
                 acts_on=[t for t in catalogue.ALERT_TYPES if catalogue.may_act(who.role.value, t)],
                 may_collect=who.can(Permission.COLLECT), area=list(who.area), city=who.city, centre=centre,
                 timezone=city.timezone if city is not None else ctx.settings.analytics.timezone)


@router.post("/bins/{device_id}/emptied", response_model=EmptiedOut, responses={**NOT_FOUND, **CONFLICT})
def emptied(device_id: DeviceId, request: Request, ctx: ContextDep, session: SessionDep, who: Collector,
            body: Annotated[EmptiedIn | None, Body()] = None, key: IdempotencyKey = None) -> Response:
    """A person emptied the bin: record the collection and clear its full alerts (module docstring)."""
    now = utcnow()
    body = body or EmptiedIn()
    at = _when(body.at, now)
    book = AlertBook(session, ctx.notifiers, outbox_channels(ctx.settings, city_zones(session)))

    def apply() -> dict[str, Any]:
        dev = _bin(session, who, device_id)
        latest = session.get(DeviceLatestRow, dev.id)
        level = metric_value(latest.metrics, "fillingLevel")[0] if latest is not None else None
        seen = session.scalars(select(CollectionRow).where(  # the sensor already showed this emptying
            CollectionRow.device_id == dev.id, CollectionRow.source == "sensor",
            CollectionRow.at >= at - SAME_EMPTYING, CollectionRow.at <= at + SAME_EMPTYING)
            .order_by(CollectionRow.at.desc()).limit(1)).first()
        if seen is not None:  # one pickup: the person confirms it (analytics.pickups.record, the other way)
            row, seen.source, seen.actor = seen, "crew", who.actor
            level = row.level_before
        else:
            row = CollectionRow(device_id=dev.id, at=at, level_before=level, level_after=None, source="crew",
                                actor=who.actor)
            session.add(row)
        session.flush()
        if latest is not None:  # the bins list shows the emptying now, not after the next analytics run
            derived = dict(latest.derived or {})
            last = iso_time(derived.get("last_emptying"))
            if last is None or row.at > last:
                derived["last_emptying"] = row.at.isoformat()
                latest.derived = derived
        reason = f"emptied by {who.actor}" + (f": {body.note}" if body.note else "")
        cleared = []
        for type_ in EMPTYING_CLEARS:
            alert = book.active(dev.id, type_)
            if alert is not None:
                cleared.append(book.clear(alert.id, now, who.actor, reason).id)
        return EmptiedOut(collection_id=row.id, device_id=dev.id, at=at, actor=who.actor,
                          level_before=shown("fillingLevel", level),
                          cleared=cleared).model_dump(mode="json")

    response, replayed = once(session, who, key, request, apply)
    if not replayed:
        ctx.alerts.invalidate()
        ctx.bins.invalidate()
        book.publish()
    return response


@router.post("/bins/{device_id}/cant-empty", response_model=AlertOut, responses={**NOT_FOUND, **CONFLICT})
def cant_empty(device_id: DeviceId, body: CantEmptyIn, request: Request, ctx: ContextDep, session: SessionDep,
               who: Collector, key: IdempotencyKey = None) -> Response:
    """A person could not empty the bin: tell the supervisor with a ``cant_empty`` alert (module docstring)."""
    now = utcnow()
    at = _when(body.at, now)
    book = AlertBook(session, ctx.notifiers, outbox_channels(ctx.settings, city_zones(session)))
    spec = catalogue.CANT_EMPTY

    def apply() -> dict[str, Any]:
        dev = _bin(session, who, device_id)
        details = {"reason": body.reason, "note": body.note, "by": who.actor, "at": at.isoformat()}
        row, _ = book.raise_(dev.id, spec.name, spec.severities[-1], now, details, dev.kecamatan, actor=who.actor)
        return alert_out(session, row)

    response, replayed = once(session, who, key, request, apply)
    if not replayed:
        ctx.alerts.invalidate()
        book.publish()
    return response
