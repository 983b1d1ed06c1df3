"""``/devices``: the registry. Everyone with a token reads it; technicians and admins change it."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from api.auth import Forbidden
from api.deps import AppContext, ContextDep, DeviceId, DeviceWriter, Reader, SessionDep, scoped_device
from api.errors import Conflict, InvalidRequest
from api.query import one_of, resolve_kecamatan
from api.schemas import CONFLICT, ERRORS, NOT_FOUND, DeviceOut
from devices.credentials import revoke_on_broker
from devices.registry import (
    STATUSES,
    DeviceIn,
    DeviceUpdate,
    add_device,
    list_devices,
    retire_device,
    update_device,
)
from lorong.core.errors import ConfigError, DeviceRetired
from lorong.core.model import DeviceKind, utcnow
from lorong.storage.kecamatan import known_kecamatan
from lorong.storage.tables import DeviceRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERRORS)


def _out(row: DeviceRow) -> DeviceOut:
    return DeviceOut.model_validate(row, from_attributes=True)


@router.get("", response_model=list[DeviceOut])
def devices(
    session: SessionDep,
    who: Reader,
    kind: DeviceKind | None = None,
    kecamatan: str | None = Query(None, max_length=64),
    status: Annotated[str | None, Query(description="only this status; without it, every device except retired ones",
                                        json_schema_extra={"enum": list(STATUSES)}), one_of(STATUSES)] = None,
) -> list[DeviceOut]:
    """Registered devices by id (of the token's city, for a token scoped to one)."""
    if kecamatan:
        kecamatan = resolve_kecamatan(kecamatan, known_kecamatan(session, who.city), who.city)
    return [_out(r) for r in list_devices(session, kind, kecamatan, status=status, city_id=who.city)]


@router.get("/{device_id}", response_model=DeviceOut, responses=NOT_FOUND)
def device(device_id: DeviceId, session: SessionDep, who: Reader) -> DeviceOut:
    """One device (retired ones too)."""
    return _out(scoped_device(session, who, device_id))


@router.post("", response_model=DeviceOut, status_code=status.HTTP_201_CREATED,
             responses={409: {"model": CONFLICT[409]["model"], "description": "the id is taken"}})
def create(body: DeviceIn, ctx: ContextDep, session: SessionDep, who: DeviceWriter) -> DeviceOut:
    """Register a device (technician or admin). Ids are never reused, not even a retired one's. A
    token scoped to a city registers devices of its city (its city when the body names none)."""
    if who.city is not None:
        if body.city_id not in (None, who.city):
            raise Forbidden(f"a token of {who.city} registers devices of {who.city} only")
        body = body.model_copy(update={"city_id": who.city})
    row = add_device(session, body)
    session.commit()
    ctx.bins.invalidate()
    return _out(row)


@router.patch("/{device_id}", response_model=DeviceOut, responses={**NOT_FOUND, **CONFLICT})
def change(device_id: DeviceId, body: DeviceUpdate, ctx: ContextDep, session: SessionDep,
           who: DeviceWriter) -> DeviceOut:
    """Change the fields given in the body (technician or admin); a retired device cannot change (409).
    A token scoped to a city cannot move a device to another city (403). ``"status": "retired"`` retires
    it as ``DELETE`` does, broker access included (:func:`_revoke_on_broker`)."""
    scoped_device(session, who, device_id)
    if body.city_id is not None and not who.sees(body.city_id):
        raise Forbidden(f"a token of {who.city} cannot move devices to another city")
    try:
        row = update_device(session, device_id, body)
    except DeviceRetired as exc:
        raise Conflict(str(exc)) from None
    except ValueError as exc:  # the change and the stored values do not fit together (geometry)
        raise InvalidRequest(str(exc)) from None
    session.commit()
    ctx.bins.invalidate()
    if row.status == "retired":
        _revoke_on_broker(session, ctx, row.id)
    return _out(row)


def _revoke_on_broker(session: Session, ctx: AppContext, device_id: str) -> None:
    """Rewrite the broker's password and ACL files and reload it after ``device_id`` was retired
    (:func:`devices.credentials.revoke_on_broker`); a file that cannot be written is logged, the
    retirement stands (the operator exports by hand)."""
    try:
        log.info("retired %s: %s", device_id, revoke_on_broker(session, ctx.settings))
    except (ConfigError, OSError) as exc:
        log.warning("retired %s, but the broker files were not rewritten: %s", device_id, exc)


@router.delete("/{device_id}", response_model=DeviceOut, responses=NOT_FOUND)
def retire(device_id: DeviceId, ctx: ContextDep, session: SessionDep, who: DeviceWriter) -> DeviceOut:
    """Retire a device (technician or admin): it stops being accepted and listed; its history stays.

    Its MQTT credentials are revoked, on a broker run with ``--auth`` at once
    (:func:`devices.credentials.revoke_on_broker`). Retiring a retired device changes nothing.
    """
    scoped_device(session, who, device_id)
    row = retire_device(session, device_id, utcnow())
    session.commit()
    ctx.bins.invalidate()
    _revoke_on_broker(session, ctx, row.id)
    return _out(row)
