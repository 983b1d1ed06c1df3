"""The device registry on the SQL database (SQLite or PostgreSQL through SQLAlchemy).

Device ids are DevEUIs (16 hex digits, stored upper case) for LoRaWAN devices, otherwise the
serial number (letters, digits, ``-``, ``_``, ``.``; 1..64 characters).

Lifecycle (``status``): ``in_stock`` (bought, not installed) -> ``active`` (installed and
reporting) <-> ``maintenance`` (pulled for repair) -> ``retired`` (final: its MQTT credentials
are revoked and the ingester stops accepting its messages).

A device the ingester would reject on every message is refused here: an unknown ``codec`` (not
in :data:`lorong.core.codecs.CODEC_MODELS`, the catalogue the decoders of :mod:`ingest.codecs` follow) and
a bin ``depth_mm`` not greater than its ``blind_zone_mm`` (``ingest.normalize.fill_level`` rejects
that geometry as ``bad_geometry``). So is a bin that could never alert: one without ``depth_mm`` has
no fill level, so it would read "ok" for ever (:func:`check_depth`); only a sensor still ``in_stock``
may wait for it.

Every function here takes a session and leaves committing to the caller, so a CLI command or
an API request is one transaction.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from devices.cities import get_city, resolve_city
from lorong.core.codecs import check_codec_id
from lorong.core.errors import DeviceExists, DeviceRetired, UnknownDevice
from lorong.core.model import DEFAULT_REPORT_INTERVAL_S, DeviceInfo, DeviceKind, utcnow
from lorong.core.settings import CITY_ID, CitySettings
from lorong.storage.influx import check_tag_value
from lorong.storage.tables import AlertRow, DeviceCredentialRow, DeviceRow

log = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STATUSES = ("in_stock", "active", "maintenance", "retired")
WASTE_KINDS = ("organik", "anorganik", "campuran")
"""Waste streams of Indonesian bins (PP 81/2012 sorts household waste into organic and inorganic)."""

TEXT_MAX = {"model": 64, "kecamatan": 64, "kelurahan": 64, "street": 128, "landmark": 128, "firmware": 32,
            "installed_by": 64}
"""Most characters of each free-text field: the width of its column in ``lorong.storage.tables.DeviceRow``."""

_DEVEUI = re.compile(r"[0-9A-Fa-f]{16}")


def normalize_id(device_id: str) -> str:
    """Canonical form of a device id: DevEUIs upper case, others as given (surrounding blanks dropped).

    Raises:
        ValueError: not a valid id.
    """
    text = device_id.strip()
    if not DEVICE_ID.match(text):
        raise ValueError(f"bad device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if _DEVEUI.fullmatch(text):
        return text.upper()
    return text


def check_geometry(depth_mm: float | None, blind_zone_mm: float | None) -> None:
    """Refuse a bin whose depth (sensor face to empty floor, mm) is not greater than the sensor's
    blind zone (mm): no fill level can be computed (``ingest.normalize.fill_level``).

    Raises:
        ValueError: ``depth_mm <= blind_zone_mm``; the message names both fields.
    """
    if depth_mm is not None and blind_zone_mm is not None and depth_mm <= blind_zone_mm:
        raise ValueError(f"blind_zone_mm ({blind_zone_mm:g} mm) must be less than depth_mm ({depth_mm:g} mm)")


NEEDS_DEPTH = ("a bin needs its depth (sensor face to the empty bin floor, mm; --depth-mm) to compute its fill "
               "level; only a bin in stock may go without")
"""Why a bin without ``depth_mm`` is refused (API 422 on ``depth_mm``, CLI one ``error:`` line)."""

BIN_ONLY = ("depth_mm", "blind_zone_mm", "capacity_l", "waste_kind")
"""Fields of a bin's geometry and contents; an air station given one is refused (a ``blind_zone_mm`` of 0,
the column's default that a CSV export writes for every device, counts as not given)."""

DEFAULT_CITY: str = CitySettings().id
"""The city of a device that names none when no deployment city is passed (``LORONG_CITY__ID``'s default)."""

NOT_FOR_AIR = "only a bin has it; an air station has no bin geometry"
"""Why an air station with a :data:`BIN_ONLY` field is refused (API 422 on that field)."""


def check_depth(kind: DeviceKind | str, status: str | None, depth_mm: float | None) -> None:
    """Refuse a bin that is not ``in_stock`` (or ``retired``) and has no ``depth_mm``.

    Its fill level, ``(depth_mm - distance) / (depth_mm - blind_zone_mm)``, cannot be computed, so it
    would never raise ``bin_full`` and ``/bins`` would show it "ok" (issue 14 item 10).

    Raises:
        ValueError: ``"depth_mm: " + NEEDS_DEPTH``.
    """
    if DeviceKind(kind) is DeviceKind.BIN and status not in ("in_stock", "retired") and depth_mm is None:
        raise ValueError(f"depth_mm: {NEEDS_DEPTH}")


class _DeviceChecks(BaseModel):
    """Field checks shared by :class:`DeviceIn` and :class:`DeviceUpdate`."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("id", check_fields=False)
    @classmethod
    def _id(cls, v: str) -> str:
        return normalize_id(v)

    @field_validator("kecamatan", check_fields=False)
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                check_tag_value(v)
            except ValueError:
                raise ValueError(f"kecamatan {v!r} holds a backslash: it is an InfluxDB tag, and line protocol "
                                 "cannot carry one; remove it") from None
        return v

    @field_validator("status", check_fields=False)
    @classmethod
    def _status(cls, v: str | None) -> str | None:
        if v is not None and v not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        return v

    @field_validator("waste_kind", check_fields=False)
    @classmethod
    def _waste(cls, v: str | None) -> str | None:
        if v not in (None, "", *WASTE_KINDS):
            raise ValueError(f"waste_kind must be one of {', '.join(WASTE_KINDS)}")
        return v or None

    @field_validator("codec", check_fields=False)
    @classmethod
    def _codec(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        return check_codec_id(v)

    @field_validator("blind_zone_mm", check_fields=False)
    @classmethod
    def _blind_zone(cls, v: float | None, info: ValidationInfo) -> float | None:
        depth = info.data.get("depth_mm")  # validated before: declared above blind_zone_mm
        if v is not None and depth is not None:
            check_geometry(depth, v)
        return v

    @field_validator("installed_at", check_fields=False)
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("installed_at needs a UTC offset, e.g. 2026-11-29T10:00:00+08:00")
        return v


class DeviceIn(_DeviceChecks):
    """A device as entered by a technician (CLI, CSV or API).

    Units: lat/lon WGS84 degrees; depth_mm (sensor face to the empty bin floor) and
    blind_zone_mm (the sensor's minimum range) millimetres; capacity_l litres;
    report_interval_s seconds; full_threshold a 0..1 fraction. ``installed_at`` must carry
    a UTC offset. A bin needs ``depth_mm`` unless in stock (:data:`NEEDS_DEPTH`); an air station
    takes none of :data:`BIN_ONLY` (:data:`NOT_FOR_AIR`).
    """

    id: str
    kind: DeviceKind
    model: str = Field("", max_length=TEXT_MAX["model"])
    codec: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    kecamatan: str = Field("", max_length=TEXT_MAX["kecamatan"])
    kelurahan: str = Field("", max_length=TEXT_MAX["kelurahan"])
    street: str = Field("", max_length=TEXT_MAX["street"])
    landmark: str = Field("", max_length=TEXT_MAX["landmark"])
    depth_mm: float | None = Field(None, gt=0, le=20000)
    blind_zone_mm: float = Field(0.0, ge=0, le=5000)
    capacity_l: float | None = Field(None, gt=0)
    waste_kind: str | None = None
    full_threshold: float | None = Field(None, gt=0, le=1)
    report_interval_s: int = Field(DEFAULT_REPORT_INTERVAL_S, gt=0, le=86400 * 7)
    status: str = "active"
    firmware: str = Field("", max_length=TEXT_MAX["firmware"])
    installed_at: datetime | None = None
    installed_by: str = Field("", max_length=TEXT_MAX["installed_by"])
    city_id: str | None = Field(None, pattern=CITY_ID)

    @model_validator(mode="after")
    def _bin_has_depth(self) -> DeviceIn:
        try:
            check_depth(self.kind, self.status, self.depth_mm)
        except ValueError:  # reported on the field, so the API's 422 names body.depth_mm
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("bin_depth", NEEDS_DEPTH), loc=("depth_mm",), input=None)]) from None
        return self

    @model_validator(mode="after")
    def _air_has_no_bin_geometry(self) -> DeviceIn:
        if self.kind is not DeviceKind.AIR:
            return self
        given = [f for f in BIN_ONLY if getattr(self, f) not in (None, 0.0) and f in self.model_fields_set]
        if given:  # one error per field, so the API's 422 names each body field
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("bin_only", NOT_FOR_AIR), loc=(f,), input=getattr(self, f))
                for f in given])
        return self


NULLABLE = frozenset({"codec", "lat", "lon", "depth_mm", "capacity_l", "waste_kind", "full_threshold",
                      "installed_at"})
"""Fields a :class:`DeviceUpdate` may clear by setting them to ``None``."""


class DeviceUpdate(_DeviceChecks):
    """A partial change to a registered device: only the fields that are set are changed.

    Same units and checks as :class:`DeviceIn`; the id cannot be changed (an ``id`` field is
    rejected). Setting a field in :data:`NULLABLE` to ``None`` clears it; ``None`` for any other
    field is rejected.
    """

    kind: DeviceKind | None = None
    model: str | None = Field(None, max_length=TEXT_MAX["model"])
    codec: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    kecamatan: str | None = Field(None, max_length=TEXT_MAX["kecamatan"])
    kelurahan: str | None = Field(None, max_length=TEXT_MAX["kelurahan"])
    street: str | None = Field(None, max_length=TEXT_MAX["street"])
    landmark: str | None = Field(None, max_length=TEXT_MAX["landmark"])
    depth_mm: float | None = Field(None, gt=0, le=20000)
    blind_zone_mm: float | None = Field(None, ge=0, le=5000)
    capacity_l: float | None = Field(None, gt=0)
    waste_kind: str | None = None
    full_threshold: float | None = Field(None, gt=0, le=1)
    report_interval_s: int | None = Field(None, gt=0, le=86400 * 7)
    status: str | None = None
    firmware: str | None = Field(None, max_length=TEXT_MAX["firmware"])
    installed_at: datetime | None = None
    installed_by: str | None = Field(None, max_length=TEXT_MAX["installed_by"])
    city_id: str | None = Field(None, pattern=CITY_ID)

    @model_validator(mode="after")
    def _no_null_required(self) -> DeviceUpdate:
        bad = sorted(f for f in self.model_fields_set if f not in NULLABLE and getattr(self, f) is None)
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot be cleared")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields that were set, as column name -> new value."""
        return {k: getattr(self, k) for k in sorted(self.model_fields_set)}


def to_info(row: DeviceRow, default_city: str) -> DeviceInfo:
    """The ingest/analytics view of a registry row; a row that names no city (one built from a
    registry CSV without ``city_id``) is in ``default_city`` (the deployment's, ``LORONG_CITY__ID``),
    so ``DeviceInfo.city`` is always a city id."""
    return DeviceInfo(
        device_id=row.id, kind=DeviceKind(row.kind), codec=row.codec, kecamatan=row.kecamatan,
        city=row.city_id or default_city,
        bin_depth_mm=row.depth_mm, blind_zone_mm=row.blind_zone_mm or 0.0,
        full_threshold=row.full_threshold, report_interval_s=row.report_interval_s, lat=row.lat, lon=row.lon,
    )


def add_device(session: Session, device: DeviceIn) -> DeviceRow:
    """Insert a device (the caller commits).

    Raises:
        DeviceExists: the id is taken (also by a retired device: ids are never reused).
        UnknownCity: its city is not registered, or it names none and there are several.
    """
    if session.get(DeviceRow, device.id) is not None:
        raise DeviceExists(f"device {device.id} is already registered")
    now = utcnow()
    values = {**device.model_dump(), "city_id": resolve_city(session, device.city_id)}
    row = DeviceRow(**values, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def get_device(session: Session, device_id: str) -> DeviceRow:
    """The registry row of ``device_id`` (retired devices included).

    Raises:
        UnknownDevice: no such device, or not a valid id.
    """
    try:
        key = normalize_id(device_id)
    except ValueError:
        raise UnknownDevice(f"no device {device_id!r} in the registry") from None
    row = session.get(DeviceRow, key)
    if row is None:
        raise UnknownDevice(f"no device {device_id!r} in the registry")
    return row


def list_devices(session: Session, kind: DeviceKind | None = None, kecamatan: str | None = None,
                 include_retired: bool = False, status: str | None = None,
                 city_id: str | None = None) -> Sequence[DeviceRow]:
    """Devices ordered by id, optionally filtered by kind, kecamatan, status and city.

    Retired devices are left out unless ``include_retired`` is true or ``status`` is ``"retired"``.
    """
    q = select(DeviceRow).order_by(DeviceRow.id)
    if kind is not None:
        q = q.where(DeviceRow.kind == DeviceKind(kind).value)
    if kecamatan:
        q = q.where(DeviceRow.kecamatan == kecamatan)
    if city_id is not None:
        q = q.where(DeviceRow.city_id == city_id)
    if status is not None:
        q = q.where(DeviceRow.status == status)
    elif not include_retired:
        q = q.where(DeviceRow.status != "retired")
    return session.scalars(q).all()


def revoke_credentials(session: Session, device_id: str, at: datetime) -> int:
    """Mark every live MQTT credential of a device revoked at ``at``; returns how many were live.

    The broker learns of it on the next ``lorong devices credentials export``.
    """
    result = session.execute(
        update(DeviceCredentialRow)
        .where(DeviceCredentialRow.device_id == device_id, DeviceCredentialRow.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def update_device(session: Session, device_id: str, change: DeviceUpdate) -> DeviceRow:
    """Apply the fields set in ``change`` to a device (the caller commits).

    Setting ``status`` to ``retired`` has the effect of :func:`retire_device` (credentials revoked).
    Moving it to another city (``city_id``) moves its active alerts too (their ``city_id``: the new
    city's tokens and chats see them); its cleared alerts stay the old city's history.

    Raises:
        UnknownDevice: no such device.
        DeviceRetired: the device is retired (a retired device cannot change).
        ValueError: the change leaves ``depth_mm`` not greater than ``blind_zone_mm``
            (:func:`check_geometry`), or a bin out of stock without ``depth_mm`` (:func:`check_depth`).
        UnknownCity: the change moves it to a city that is not registered.
    """
    row = get_device(session, device_id)
    if row.status == "retired":
        raise DeviceRetired(f"device {row.id} is retired and cannot be changed "
                            "(register its hardware again under a new id)")
    values = change.changes()
    if "city_id" in values:
        get_city(session, values["city_id"])
        if values["city_id"] != row.city_id:  # what is still going on moves with it; cleared alerts stay history
            session.execute(update(AlertRow).where(AlertRow.device_id == row.id, AlertRow.status == "active")
                            .values(city_id=values["city_id"]))
    if "depth_mm" in values or "blind_zone_mm" in values:
        check_geometry(values.get("depth_mm", row.depth_mm), values.get("blind_zone_mm", row.blind_zone_mm))
    check_depth(values.get("kind", row.kind), values.get("status", row.status), values.get("depth_mm", row.depth_mm))
    now = utcnow()
    for key, value in values.items():
        setattr(row, key, value.value if isinstance(value, DeviceKind) else value)
    row.updated_at = now
    if row.status == "retired":
        revoke_credentials(session, row.id, now)
    session.flush()
    return row


def retire_device(session: Session, device_id: str, at: datetime) -> DeviceRow:
    """Retire a device at ``at`` (tz-aware) and revoke its MQTT credentials (the caller commits).

    Retiring a retired device changes nothing. The row stays, so history keeps its metadata
    and the id is never reused.

    Raises:
        UnknownDevice: no such device.
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("retire time must be tz-aware")
    row = get_device(session, device_id)
    if row.status != "retired":
        row.status = "retired"
        row.updated_at = at
        revoke_credentials(session, row.id, at)
        session.flush()
    return row


class RegistryLookup:
    """Thread-safe cached device lookup for the ingester.

    The whole registry is loaded at start and reloaded every ``refresh_s`` seconds, and at most
    once a second on a miss, so a device registered while the ingester runs is picked up.
    Retired devices are not returned (their messages are rejected as ``unknown_device``): at most
    every ``retired_check_s`` seconds a lookup counts the retired devices (one indexed-size count,
    about a millisecond for 20,000 devices on SQLite) and reloads when the count changed, so a
    retirement holds within that time instead of at the next full reload (issue 14 item 14).
    A reload that fails (the database restarting or failing over) keeps the devices already
    loaded, logs one warning, and is tried again on the same schedule; only the load at start
    raises. A device without a city is in ``default_city`` (:func:`to_info`; pass
    ``settings.city.id``).
    """

    def __init__(self, sessions: sessionmaker[Session], refresh_s: float = 60.0,
                 default_city: str = DEFAULT_CITY, retired_check_s: float = 1.0) -> None:
        self._sessions = sessions
        self._default_city = default_city
        self._refresh_s = refresh_s
        self._retired_check_s = retired_check_s
        self._lock = threading.Lock()
        self._cache: dict[str, DeviceInfo] = {}
        self._loaded = 0.0
        self._retired = -1
        self._checked = 0.0
        self._failing = False
        self.reload()

    def reload(self) -> None:
        """Reload every non-retired device from the database."""
        with self._sessions() as s:
            retired = self._count_retired(s)
            cache = {r.id: to_info(r, self._default_city) for r in list_devices(s)}
        with self._lock:
            self._cache = cache
            self._loaded = self._checked = time.monotonic()
            self._retired = retired

    @staticmethod
    def _count_retired(session: Session) -> int:
        return int(session.scalar(select(func.count()).where(DeviceRow.status == "retired")) or 0)

    def _retired_changed(self) -> bool:
        """True when the number of retired devices differs from the loaded one (checked at most
        every ``retired_check_s`` seconds; a failing database reads as no change)."""
        now = time.monotonic()
        if now - self._checked < self._retired_check_s:
            return False
        self._checked = now
        try:
            with self._sessions() as s:
                return self._count_retired(s) != self._retired
        except SQLAlchemyError:
            return False

    def get(self, device_id: str) -> DeviceInfo | None:
        """The device, or ``None``; DevEUIs match case-insensitively."""
        info = self._cache.get(device_id)  # ids arrive as registered: skip the DevEUI check
        key = device_id
        if info is None:
            key = device_id.upper() if _DEVEUI.fullmatch(device_id) else device_id
            info = self._cache.get(key)
        age = time.monotonic() - self._loaded
        if age > self._refresh_s or (info is None and age > 1.0) or (info is not None and self._retired_changed()):
            try:
                self.reload()
            except SQLAlchemyError as exc:  # keep serving what was loaded; try again later
                with self._lock:
                    self._loaded = time.monotonic()
                if not self._failing:
                    log.warning("device registry reload failed, using the %d devices loaded before: %s",
                                len(self._cache), str(getattr(exc, "orig", exc)).strip().split("\n")[0])
                self._failing = True
                return info
            if self._failing:
                log.info("device registry reloaded again (%d devices)", len(self._cache))
                self._failing = False
            info = self._cache.get(key)
        return info
