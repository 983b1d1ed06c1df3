"""SQLAlchemy 2 table models for the SQL database (SQLite by default, PostgreSQL for larger cities).

The schema is created and changed only by the Alembic migrations in ``lorong/storage/migrations``;
these models must match them (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back tz-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Lorong stores tz-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Lorong table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class CityRow(Base):
    """A city: every device belongs to one, and analytics, alerts, tokens and dashboards are per city.

    ``id`` is a lower-case slug (``makassar``), the ``city`` tag of its InfluxDB points.
    ``timezone`` is an IANA name (``Asia/Makassar``): the city's "today", collection rounds and
    route-plan days. ``kecamatan`` maps each district's name to its centroid ``[lat, lon]`` (WGS84
    degrees, for maps); ``centre_lat``/``centre_lon`` is the map centre. ``analytics`` holds the
    city's overrides of :class:`lorong.core.settings.AnalyticsSettings` fields (``collection_times``,
    ``full_threshold`` ...), applied on top of the deployment's settings.
    """

    __tablename__ = "cities"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64))
    centre_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    centre_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    kecamatan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    analytics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column()


class DeviceRow(Base):
    """A registered sensor.

    ``id`` is the DevEUI (16 upper-case hex digits) for LoRaWAN devices, else the serial number.
    Geometry is in millimetres (depth from the sensor face to the empty floor, blind zone below
    which the sensor cannot measure) and litres. ``status`` is one of in_stock, active,
    maintenance, retired.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    model: Mapped[str] = mapped_column(String(64), default="")
    codec: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    city_id: Mapped[str] = mapped_column(String(32), index=True)
    """The device's city (``cities.id``; checked by the registry, see migration 0008)."""
    kecamatan: Mapped[str] = mapped_column(String(64), default="")
    kelurahan: Mapped[str] = mapped_column(String(64), default="")
    street: Mapped[str] = mapped_column(String(128), default="")
    landmark: Mapped[str] = mapped_column(String(128), default="")
    depth_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    blind_zone_mm: Mapped[float] = mapped_column(Float, default=0.0)
    capacity_l: Mapped[float | None] = mapped_column(Float, nullable=True)
    waste_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    full_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    report_interval_s: Mapped[int] = mapped_column(Integer, default=600)
    status: Mapped[str] = mapped_column(String(16), default="active")
    firmware: Mapped[str] = mapped_column(String(32), default="")
    installed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    installed_by: Mapped[str] = mapped_column(String(64), default="")
    last_seen: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class DeviceCredentialRow(Base):
    """A device's MQTT credential: username = device id, PBKDF2 password hash, allowed topic."""

    __tablename__ = "device_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    topic: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DeviceLatestRow(Base):
    """Latest value of every metric of a device: the fast home of "current state" for the API.

    ``metrics`` maps metric name to ``[value, epoch_ms]``; ``derived`` holds analytics results.
    """

    __tablename__ = "device_latest"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    derived: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Analytics results for the device: bins ``fill_rate_per_h``, ``full_at`` (ISO time),
    ``last_emptying`` (ISO time); stations ``ispu``, ``ispu_category``, ``critical_pollutant``,
    ``us_aqi``, ``us_aqi_category``."""


class AlertRow(Base):
    """An alert (ThingsBoard model): at most one active alert per device and type.

    ``status`` is ``active`` or ``cleared``; ``acknowledged`` is independent of it, giving the
    four ThingsBoard states. ``severity`` is critical, major, minor or warning. ``count`` is how
    many times the condition was seen while active.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_one_active",
            "device_id",
            "type",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_alerts_status_started", "status", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    kecamatan: Mapped[str] = mapped_column(String(64), default="")
    city_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    """The city of the alert's device (``None``: a single-city run's city-wide alert)."""
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    ack_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ack_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cleared_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cleared_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertHistoryRow(Base):
    """One change of an alert: opened, extended, escalated, acknowledged, cleared."""

    __tablename__ = "alert_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column()
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64), default="system")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CollectionRow(Base):
    """A pickup (FIWARE WasteContainer ``dateLastEmptying``): fill before and after.

    ``source`` is ``sensor`` for a pickup detected in the fill levels (:mod:`analytics.pickups`) or
    ``crew`` for one a person reported ("Emptied" on the crew page), whose ``actor`` is the
    token's ``role:name``; a reported pickup has the latest level before and no level after
    (the sensor tells on its next uplink).
    """

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("device_id", "at", name="uq_collections_device_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column()
    level_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    level_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="sensor")
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RoutePlanRow(Base):
    """A planned collection route: ordered stops (device ids) for one vehicle of one city on one day
    (``day`` is the local date in the city's zone; ``city_id`` NULL: a plan saved before cities had
    plans, migration 0009)."""

    __tablename__ = "route_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[str] = mapped_column(String(10), index=True)
    city_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    vehicle: Mapped[int] = mapped_column(Integer)
    stops: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    distance_km: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column()


class DeadLetterRow(Base):
    """A rejected MQTT message kept for inspection and replay: raw bytes, topic and reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    replayed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """The sender, from the payload or the topic layout (None when neither names one; rows before migration 0005)."""


class ApiTokenRow(Base):
    """An API token: only its SHA-256 hash is stored; role is crew, officer, technician, supervisor or admin.

    ``area`` is the list of kecamatan the holder works in (``["Wajo", "Tallo"]``), or null for the
    whole city: a token with an area sees and acts on the bins and alerts of those kecamatan only
    (:mod:`api.auth`).
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    city_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The one city the token sees (``cities.id``), or ``None`` for every city (a provincial officer)."""
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    area: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class NotificationOutboxRow(Base):
    """One alert change waiting for (or done with) one notifier channel: the transactional outbox.

    Written in the transaction of the alert change (:mod:`analytics.outbox`), so a committed change
    is never lost and a rolled-back one is never sent. ``channel`` is ``mqtt`` or ``webhook``;
    ``payload`` is the JSON text the channel sends. ``sent_at`` is set once the receiver
    acknowledged (MQTT PUBACK, HTTP 2xx); ``failed_at`` once it refused for good (HTTP 4xx other
    than 408/429); until then ``next_attempt_at`` is when the next try is due. ``channel`` is
    ``mqtt``, ``webhook`` or ``telegram:<chat name>``. ``not_before`` holds a row back (quiet
    hours): until then the channel sends the rows behind it.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index(
            "ix_notification_outbox_pending",
            "channel",
            "id",
            sqlite_where=text("sent_at IS NULL AND failed_at IS NULL"),
            postgresql_where=text("sent_at IS NULL AND failed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(nullable=True)


class IdempotencyKeyRow(Base):
    """A POST already applied, by the client's ``Idempotency-Key`` (IETF draft
    ``draft-ietf-httpapi-idempotency-key-header``): a repeat with the same key and token gets the
    stored answer instead of a second change. The crew page makes the key on the phone, so an
    action queued offline and sent twice is applied once.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotency_token_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(256))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(index=True)
