"""``/devices``: the registry."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep
from api.schemas import DeviceOut
from core.model import DeviceKind
from devices.registry import get_device, list_devices

router = APIRouter(prefix="/devices", tags=["devices"])


@router.get("", response_model=list[DeviceOut])
def devices(session: SessionDep, kind: DeviceKind | None = None, kecamatan: str | None = None) -> list[DeviceOut]:
    """Registered devices (not retired), by id."""
    return [DeviceOut.model_validate(r, from_attributes=True) for r in list_devices(session, kind, kecamatan)]


@router.get("/{device_id}", response_model=DeviceOut, responses={404: {"description": "no such device"}})
def device(device_id: str, session: SessionDep) -> DeviceOut:
    """One device."""
    return DeviceOut.model_validate(get_device(session, device_id), from_attributes=True)
