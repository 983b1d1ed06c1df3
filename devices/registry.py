"""The device registry on the SQL database (SQLite or PostgreSQL through SQLAlchemy).

Device ids are DevEUIs (16 hex digits, stored upper case) for LoRaWAN devices, otherwise the
serial number (letters, digits, ``-``, ``_``, ``.``; 1..64 characters).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import DeviceExists, UnknownDevice
from core.model import DeviceInfo, DeviceKind, utcnow
from storage.tables import DeviceRow

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATUSES = ("in_stock", "active", "maintenance", "retired")
WASTE_KINDS = ("organik", "anorganik", "campuran")


def normalize_id(device_id: str) -> str:
    """Canonical form of a device id: DevEUIs upper case, others as given.

    Raises:
        ValueError: not a valid id.
    """
    text = device_id.strip()
    if not DEVICE_ID.match(text):
        raise ValueError(f"bad device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if re.fullmatch(r"[0-9A-Fa-f]{16}", text):
        return text.upper()
    return text


class DeviceIn(BaseModel):
    """A device as entered by a technician (CLI, CSV or API).

    Units: lat/lon WGS84 degrees; depth_mm and blind_zone_mm millimetres; capacity_l litres;
    report_interval_s seconds; full_threshold a 0..1 fraction.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: DeviceKind
    model: str = ""
    codec: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    kecamatan: str = ""
    kelurahan: str = ""
    street: str = ""
    depth_mm: float | None = Field(None, gt=0, le=20000)
    blind_zone_mm: float = Field(0.0, ge=0, le=5000)
    capacity_l: float | None = Field(None, gt=0)
    waste_kind: str | None = None
    full_threshold: float | None = Field(None, gt=0, le=1)
    report_interval_s: int = Field(600, gt=0, le=86400 * 7)
    status: str = "active"
    firmware: str = ""
    installed_at: datetime | None = None
    installed_by: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return normalize_id(v)

    @field_validator("status")
    @classmethod
    def _status(cls, v: str) -> str:
        if v not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        return v

    @field_validator("waste_kind")
    @classmethod
    def _waste(cls, v: str | None) -> str | None:
        if v not in (None, "", *WASTE_KINDS):
            raise ValueError(f"waste_kind must be one of {', '.join(WASTE_KINDS)}")
        return v or None


def to_info(row: DeviceRow) -> DeviceInfo:
    """The ingest/analytics view of a registry row."""
    return DeviceInfo(
        device_id=row.id, kind=DeviceKind(row.kind), codec=row.codec, kecamatan=row.kecamatan,
        bin_depth_mm=row.depth_mm, blind_zone_mm=row.blind_zone_mm or 0.0,
        full_threshold=row.full_threshold, report_interval_s=row.report_interval_s, lat=row.lat, lon=row.lon,
    )


def add_device(session: Session, device: DeviceIn) -> DeviceRow:
    """Insert a device (the caller commits).

    Raises:
        DeviceExists: the id is taken.
    """
    if session.get(DeviceRow, device.id) is not None:
        raise DeviceExists(f"device {device.id} is already registered")
    now = utcnow()
    row = DeviceRow(**device.model_dump(), created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def get_device(session: Session, device_id: str) -> DeviceRow:
    """The registry row of ``device_id``.

    Raises:
        UnknownDevice: no such device.
    """
    row = session.get(DeviceRow, normalize_id(device_id))
    if row is None:
        raise UnknownDevice(f"no device {device_id!r} in the registry")
    return row


def list_devices(session: Session, kind: DeviceKind | None = None, kecamatan: str | None = None,
                 include_retired: bool = False) -> Sequence[DeviceRow]:
    """Devices ordered by id, optionally filtered."""
    q = select(DeviceRow).order_by(DeviceRow.id)
    if kind is not None:
        q = q.where(DeviceRow.kind == kind.value)
    if kecamatan:
        q = q.where(DeviceRow.kecamatan == kecamatan)
    if not include_retired:
        q = q.where(DeviceRow.status != "retired")
    return session.scalars(q).all()


class RegistryLookup:
    """Thread-safe cached device lookup for the ingester.

    The whole registry is loaded at start and reloaded every ``refresh_s`` seconds, and at most
    once a second on a miss, so a device registered while the ingester runs is picked up.
    Retired devices are not returned (their messages are rejected as ``unknown_device``).
    """

    def __init__(self, sessions: sessionmaker[Session], refresh_s: float = 60.0) -> None:
        self._sessions = sessions
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cache: dict[str, DeviceInfo] = {}
        self._loaded = 0.0
        self.reload()

    def reload(self) -> None:
        """Reload every non-retired device from the database."""
        with self._sessions() as s:
            cache = {r.id: to_info(r) for r in list_devices(s)}
        with self._lock:
            self._cache = cache
            self._loaded = time.monotonic()

    def get(self, device_id: str) -> DeviceInfo | None:
        """The device, or ``None``; DevEUIs match case-insensitively."""
        key = device_id.upper() if re.fullmatch(r"[0-9A-Fa-f]{16}", device_id) else device_id
        info = self._cache.get(key)
        age = time.monotonic() - self._loaded
        if age > self._refresh_s or (info is None and age > 1.0):
            self.reload()
            info = self._cache.get(key)
        return info
