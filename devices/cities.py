"""Cities in the registry: every device belongs to one, and analytics, alerts, API tokens and
dashboards are per city.

A city has an id (a lower-case slug, :data:`lorong.core.settings.CITY_ID`: the ``city`` tag of its
InfluxDB points and the value of the Grafana ``city`` variable), a name, an IANA time zone (the
city's "today", collection rounds and route-plan days), its kecamatan with their centroids, a map
centre, and overrides of :class:`lorong.core.settings.AnalyticsSettings` (collection times and weekdays,
thresholds) applied on top of the deployment's settings by :func:`city_settings`.

A registry migrated from one city has that city only (migration 0008): while there is one city, a
device registered without naming one joins it (:func:`resolve_city`), as before cities existed.

A city is changed with :func:`update_city` (name, zone, centre, kecamatan, analytics overrides) and
removed with :func:`remove_city` only once nothing refers to it any more (:class:`CityHoldings`).

Every function takes a session and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ColumnElement, Select, delete, func, or_, select
from sqlalchemy.orm import Session

from lorong.core.errors import CityExists, CityInUse, UnknownCity
from lorong.core.model import utcnow
from lorong.core.settings import CITY_ID, AnalyticsSettings, check_zone
from lorong.storage.influx import check_tag_value
from lorong.storage.kecamatan import registered_as
from lorong.storage.tables import (
    AlertHistoryRow,
    AlertRow,
    ApiTokenRow,
    CityRow,
    CollectionRow,
    DeviceCredentialRow,
    DeviceLatestRow,
    DeviceRow,
    IdempotencyKeyRow,
    NotificationOutboxRow,
    RoutePlanRow,
)

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


def find_city(session: Session, value: str) -> CityRow:
    """The city ``value`` names, its id compared without case or surrounding space
    (:func:`lorong.storage.kecamatan.registered_as`, as the API's ``?city=`` reads it: ``Jakarta`` is
    ``jakarta``).

    Raises:
        UnknownCity: no such city (the message lists the known ids).
    """
    found = registered_as(value, session.scalars(select(CityRow.id)))
    return get_city(session, value if found is None else found)  # not found: raises, naming the known ids


def list_cities(session: Session) -> Sequence[CityRow]:
    """Every city, by id."""
    return session.scalars(select(CityRow).order_by(CityRow.id)).all()


def device_counts(session: Session) -> dict[str, int]:
    """Devices (retired ones left out) per city id."""
    q = (select(DeviceRow.city_id, func.count()).where(DeviceRow.status != "retired")
         .group_by(DeviceRow.city_id))
    return {city: int(n) for city, n in session.execute(q)}


def resolve_city(session: Session, city_id: str | None) -> str:
    """The city a device joins: ``city_id`` when registered (:func:`find_city`: without case), or the only
    city when none is named.

    Raises:
        UnknownCity: ``city_id`` is not registered, or none is named and the registry holds
            several cities (or none).
    """
    if city_id is not None:
        return find_city(session, city_id).id
    ids = session.scalars(select(CityRow.id).order_by(CityRow.id)).all()
    if len(ids) != 1:
        raise UnknownCity(f"the registry holds several cities: name the device's city with --city (one of "
                          f"{', '.join(ids)})" if ids else "no city in the registry: add one with `lorong cities add`")
    return ids[0]


def city_settings(base: AnalyticsSettings, city: CityRow) -> AnalyticsSettings:
    """The analytics settings of ``city``: ``base`` with the city's overrides and its time zone.

    Raises:
        pydantic.ValidationError: the overrides do not fit ``base`` (an overflow threshold below
            the deployment's full threshold, say).
    """
    return base.for_city(city.timezone, city.analytics or {})


class CityChange(BaseModel):
    """What to change in a registered city; a field left ``None`` (or empty) keeps its value.

    Units as :class:`CityIn`. ``kecamatan`` adds kecamatan or moves their centroid (devices name
    their kecamatan, so none is taken away here); ``analytics`` sets overrides (merged into the
    city's), ``reset`` drops overrides by field name (the deployment's value applies again).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    timezone: str | None = None
    centre: LatLon | None = None
    kecamatan: dict[str, LatLon] = Field(default_factory=dict)
    analytics: dict[str, Any] = Field(default_factory=dict)
    reset: list[str] = Field(default_factory=list)

    def empty(self) -> bool:
        """Whether nothing would change."""
        return all(v in (None, {}, []) for v in self.model_dump().values())


def update_city(session: Session, city_id: str, change: CityChange) -> list[str]:
    """Apply ``change`` to the city ``city_id`` (the caller commits; then, after a new ``timezone``,
    the daily means' continuous queries must follow: ``lorong cities edit`` does it).

    The changed city is checked as a new one would be (:class:`CityIn`: an IANA zone, WGS84
    points, known analytics fields).

    Returns:
        one ``field: old -> new`` line per field that changed (empty: nothing did).

    Raises:
        UnknownCity: no such city.
        ValueError: ``reset`` names a field the city does not override.
        pydantic.ValidationError: the changed city is not valid (unknown zone ...).
    """
    row = get_city(session, city_id)
    overrides = dict(row.analytics or {})
    missing = sorted(set(change.reset) - set(overrides))
    if missing:
        have = ", ".join(sorted(overrides)) or "none"
        raise ValueError(f"city {city_id} does not override {', '.join(missing)} (its overrides: {have})")
    overrides = {k: v for k, v in {**overrides, **change.analytics}.items() if k not in change.reset}
    old_centre = None if row.centre_lat is None or row.centre_lon is None else (row.centre_lat, row.centre_lon)
    new = CityIn(id=row.id, name=change.name if change.name is not None else row.name,
                 timezone=change.timezone or row.timezone, centre=change.centre or old_centre,
                 kecamatan={**{k: tuple(v) for k, v in (row.kecamatan or {}).items()}, **change.kecamatan},
                 analytics=overrides)
    done = []
    for what, before, after in (("name", row.name, new.name), ("timezone", row.timezone, new.timezone),
                                ("centre", old_centre, new.centre)):
        if before != after:
            done.append(f"{what}: {before} -> {after}")
    kecamatan = {k: list(v) for k, v in new.kecamatan.items()}
    for name in sorted(kecamatan):
        before = (row.kecamatan or {}).get(name)
        if before != kecamatan[name]:
            done.append(f"kecamatan {name}: {'new' if before is None else before} -> {kecamatan[name]}")
    for key in sorted(set(overrides) | set(row.analytics or {})):
        before, after = (row.analytics or {}).get(key), overrides.get(key)
        if before != after:
            done.append(f"analytics {key}: {'deployment' if before is None else before} -> "
                        f"{'deployment' if after is None else after}")
    row.name, row.timezone, row.kecamatan, row.analytics = new.name, new.timezone, kecamatan, overrides
    row.centre_lat, row.centre_lon = new.centre if new.centre else (None, None)
    session.flush()
    return done


@dataclass
class CityHoldings:
    """What refers to a city: counts of registry rows by kind.

    Attributes:
        devices: devices of the city by status (``active``, ``retired`` ...).
        tokens: API tokens scoped to it that still work; ``tokens_revoked``: revoked ones.
        alerts_active, alerts_cleared: its alerts (``alerts.city_id``; and those of its retired
            devices from before they moved to it).
        route_plans: its saved route plans.
    """

    devices: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    tokens_revoked: int = 0
    alerts_active: int = 0
    alerts_cleared: int = 0
    route_plans: int = 0

    def live(self) -> list[str]:
        """What blocks a removal even with the history purged, as phrases (``2 devices (1 active,
        1 maintenance)``); empty when only history is left."""
        out = []
        working = {k: n for k, n in sorted(self.devices.items()) if k != "retired"}
        if working:
            n = sum(working.values())
            out.append(f"{_plural(n, 'device')} ({', '.join(f'{v} {k}' for k, v in working.items())})")
        if self.tokens:
            out.append(_plural(self.tokens, "API token"))
        if self.alerts_active:
            out.append(_plural(self.alerts_active, "active alert"))
        return out

    def history(self) -> list[str]:
        """The rows :func:`remove_city` deletes with ``purge_history``, as phrases; empty when none."""
        out = []
        for n, what in ((self.devices.get("retired", 0), "retired device"),
                        (self.tokens_revoked, "revoked API token"), (self.alerts_cleared, "cleared alert"),
                        (self.route_plans, "route plan")):
            if n:
                out.append(_plural(n, what))
        return out


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def city_holdings(session: Session, city_id: str) -> CityHoldings:
    """Count what refers to ``city_id`` (any city id, registered or not)."""
    devices = {status: int(n) for status, n in session.execute(
        select(DeviceRow.status, func.count()).where(DeviceRow.city_id == city_id).group_by(DeviceRow.status))}
    tokens = dict(session.execute(select(ApiTokenRow.revoked_at.is_(None), func.count())
                                  .where(ApiTokenRow.city_id == city_id)
                                  .group_by(ApiTokenRow.revoked_at.is_(None))).tuples().all())
    alerts = dict(session.execute(select(AlertRow.status, func.count()).where(_alerts_of(city_id))
                                  .group_by(AlertRow.status)).tuples().all())
    plans = session.scalar(select(func.count()).select_from(RoutePlanRow).where(RoutePlanRow.city_id == city_id))
    return CityHoldings(devices=devices, tokens=int(tokens.get(True, 0)), tokens_revoked=int(tokens.get(False, 0)),
                        alerts_active=int(alerts.get("active", 0)),
                        alerts_cleared=sum(int(n) for s, n in alerts.items() if s != "active"),
                        route_plans=int(plans or 0))


def _retired(city_id: str) -> Select[str]:
    return select(DeviceRow.id).where(DeviceRow.city_id == city_id, DeviceRow.status == "retired")


def _alerts_of(city_id: str) -> ColumnElement[bool]:
    """The city's alerts, and the alerts of its retired devices raised in another city before they moved."""
    return or_(AlertRow.city_id == city_id, AlertRow.device_id.in_(_retired(city_id)))


def remove_city(session: Session, city_id: str, purge_history: bool = False) -> CityHoldings:
    """Remove the city ``city_id`` from the registry (the caller commits; then the daily means'
    continuous queries must follow: ``lorong cities remove`` does it).

    Nothing is left pointing at a city that is gone: while the city has devices, API tokens or
    alerts that are in use (:meth:`CityHoldings.live`) it is refused, and while it has history
    (retired devices, revoked tokens, cleared alerts, route plans) it is refused unless
    ``purge_history``, which deletes that history with it: the retired devices with their MQTT
    credentials, latest values and pickups; the cleared alerts with their history and their
    notifications; the revoked tokens with their remembered idempotent requests; the route plans.
    Readings in InfluxDB stay (tagged with the city id; their daily means then follow the
    deployment's zone, :mod:`lorong.storage.retention`).

    Returns:
        what the city had (and, with ``purge_history``, what was deleted with it).

    Raises:
        UnknownCity: no such city.
        CityInUse: something still refers to it; the message says what and how to move or
            remove it.
    """
    get_city(session, city_id)
    held = city_holdings(session, city_id)
    live, history = held.live(), held.history()
    if live or (history and not purge_history):
        how = []
        if any(k != "retired" for k in held.devices):
            how.append(f"move each device to another city (`lorong devices update ID --city OTHER`; "
                       f"`lorong devices list --city {city_id}` lists them) or retire it (`lorong devices retire ID`)")
        if held.tokens:
            how.append("revoke its tokens (`lorong api token revoke ID`; `lorong api token list` shows them)")
        if held.alerts_active:
            how.append("clear its active alerts (crew page, or POST /alerts/{id}/clear)")
        if history:
            how.append(f"{'then ' if how else ''}`lorong cities remove {city_id} --purge-history` deletes its "
                       f"{_join(history)} with it")
        raise CityInUse(f"city {city_id} still has {_join(live + history)}: {'; '.join(how)}")
    if history:
        _purge(session, city_id)
    session.delete(session.get(CityRow, city_id))
    session.flush()
    return held


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _purge(session: Session, city_id: str) -> None:
    """Delete the city's history (:func:`remove_city`): nothing of it is in use any more."""
    retired = _retired(city_id)
    alerts = select(AlertRow.id).where(_alerts_of(city_id), AlertRow.status != "active")
    revoked = select(ApiTokenRow.id).where(ApiTokenRow.city_id == city_id, ApiTokenRow.revoked_at.is_not(None))
    for stmt in (delete(NotificationOutboxRow).where(NotificationOutboxRow.alert_id.in_(alerts)),
                 delete(AlertHistoryRow).where(AlertHistoryRow.alert_id.in_(alerts)),
                 delete(AlertRow).where(AlertRow.id.in_(alerts)),
                 delete(DeviceCredentialRow).where(DeviceCredentialRow.device_id.in_(retired)),
                 delete(DeviceLatestRow).where(DeviceLatestRow.device_id.in_(retired)),
                 delete(CollectionRow).where(CollectionRow.device_id.in_(retired)),
                 delete(DeviceRow).where(DeviceRow.id.in_(retired)),
                 delete(IdempotencyKeyRow).where(IdempotencyKeyRow.token_id.in_(revoked)),
                 delete(ApiTokenRow).where(ApiTokenRow.id.in_(revoked)),
                 delete(RoutePlanRow).where(RoutePlanRow.city_id == city_id)):
        session.execute(stmt.execution_options(synchronize_session=False))
