"""Cities in the registry: every device belongs to one, and analytics, alerts, API tokens and
dashboards are per city.

A city has an id (a lower-case slug, :data:`lorong.core.settings.CITY_ID`: the ``city`` tag of its
InfluxDB points and the value of the Grafana ``city`` variable), a name, an IANA time zone (the
city's "today", collection rounds and route-plan days), its kecamatan with their centroids, a map
centre, and overrides of :class:`lorong.core.settings.AnalyticsSettings` (collection times and weekdays,
thresholds) applied on top of the deployment's settings by :func:`city_settings`.

A registry migrated from one city has that city only (migration 0008): while there is one city, a
device registered without naming one joins it (:func:`resolve_city`), as before cities existed.

Every function takes a session and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lorong.core.errors import CityExists, UnknownCity
from lorong.core.model import utcnow
from lorong.core.settings import CITY_ID, AnalyticsSettings, check_zone
from lorong.storage.influx import check_tag_value
from lorong.storage.tables import CityRow, DeviceRow

NOT_PER_CITY = frozenset({"timezone", "interval_s", "webhook_url", "webhook_secret", "outbox_backoff_s",
                          "outbox_backoff_max_s", "outbox_retention_days"})
"""AnalyticsSettings fields a city cannot override: its zone is the city's own ``timezone`` column,
and the scheduler's pace and the notification channels are the deployment's."""

LatLon = tuple[float, float]


RESERVED_CITY_IDS = {
    "alerts": "lorong/alerts/... is the MQTT alert topic of before cities (analytics/notify_mqtt.py)",
}
"""City ids refused because a city's MQTT topics ``lorong/<city>/alerts/...`` would collide with them."""


class CityIn(BaseModel):
    """A city as entered by an administrator (CLI or a city file).

    Units: ``centre`` and the ``kecamatan`` centroids are ``(lat, lon)`` in WGS84 degrees.
    ``analytics`` maps :class:`lorong.core.settings.AnalyticsSettings` field names to the city's values
    (``{"collection_times": ["05:30", "14:00"], "full_threshold": 0.75}``); fields in
    :data:`NOT_PER_CITY` are refused.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=CITY_ID)
    name: str = Field(min_length=1, max_length=64)
    timezone: str = "Asia/Makassar"
    centre: LatLon | None = None
    kecamatan: dict[str, LatLon] = Field(default_factory=dict)
    analytics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_CITY_IDS:
            raise ValueError(f"city id {v!r} is reserved: {RESERVED_CITY_IDS[v]}")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, tz: str) -> str:
        return check_zone(tz)

    @field_validator("centre")
    @classmethod
    def _centre(cls, v: LatLon | None) -> LatLon | None:
        if v is not None:
            _check_latlon(v, "centre")
        return v

    @field_validator("kecamatan")
    @classmethod
    def _kecamatan(cls, v: dict[str, LatLon]) -> dict[str, LatLon]:
        for name, point in v.items():
            if not 1 <= len(name) <= 64:
                raise ValueError(f"kecamatan name {name!r} must be 1 to 64 characters")
            check_tag_value(name)
            _check_latlon(point, f"kecamatan {name}")
        return v

    @field_validator("analytics")
    @classmethod
    def _analytics(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(AnalyticsSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown analytics setting(s) {', '.join(unknown)}")
        fixed = sorted(set(v) & NOT_PER_CITY)
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot be set per city")
        AnalyticsSettings.model_validate(v)  # every value checked as the deployment's would be
        return v


def _check_latlon(point: LatLon, what: str) -> None:
    lat, lon = point
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{what}: ({lat}, {lon}) is not a WGS84 latitude, longitude")


def add_city(session: Session, city: CityIn) -> CityRow:
    """Insert a city (the caller commits).

    Raises:
        CityExists: the id is taken.
    """
    if session.get(CityRow, city.id) is not None:
        raise CityExists(f"city {city.id} is already registered")
    row = CityRow(id=city.id, name=city.name, timezone=city.timezone,
                  centre_lat=city.centre[0] if city.centre else None,
                  centre_lon=city.centre[1] if city.centre else None,
                  kecamatan={k: list(v) for k, v in city.kecamatan.items()}, analytics=dict(city.analytics),
                  created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def get_city(session: Session, city_id: str) -> CityRow:
    """The city ``city_id``.

    Raises:
        UnknownCity: no such city.
    """
    row = session.get(CityRow, city_id)
    if row is None:
        known = ", ".join(c.id for c in list_cities(session)) or "none"
        raise UnknownCity(f"no city {city_id!r} in the registry (known: {known})")
    return row


def list_cities(session: Session) -> Sequence[CityRow]:
    """Every city, by id."""
    return session.scalars(select(CityRow).order_by(CityRow.id)).all()


def device_counts(session: Session) -> dict[str, int]:
    """Devices (retired ones left out) per city id."""
    q = (select(DeviceRow.city_id, func.count()).where(DeviceRow.status != "retired")
         .group_by(DeviceRow.city_id))
    return {city: int(n) for city, n in session.execute(q)}


def resolve_city(session: Session, city_id: str | None) -> str:
    """The city a device joins: ``city_id`` when registered, or the only city when none is named.

    Raises:
        UnknownCity: ``city_id`` is not registered, or none is named and the registry holds
            several cities (or none).
    """
    if city_id is not None:
        return get_city(session, city_id).id
    ids = session.scalars(select(CityRow.id).order_by(CityRow.id).limit(2)).all()
    if len(ids) != 1:
        raise UnknownCity(f"name the device's city (one of {', '.join(ids)}...)" if ids
                          else "no city in the registry: add one with `lorong cities add`")
    return ids[0]


def city_settings(base: AnalyticsSettings, city: CityRow) -> AnalyticsSettings:
    """The analytics settings of ``city``: ``base`` with the city's overrides and its time zone.

    Raises:
        pydantic.ValidationError: the overrides do not fit ``base`` (an overflow threshold below
            the deployment's full threshold, say).
    """
    return base.for_city(city.timezone, city.analytics or {})
