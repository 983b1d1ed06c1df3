"""Request and response schemas of the HTTP API, apart from the domain types.

Conventions:

- Metric values use the FIWARE Smart Data Models names of :mod:`lorong.core.metrics` (``fillingLevel``,
  ``pm25``, ``batteryLevel``), in the canonical unit of that metric; fractions are 0..1.
  Every numeric field states its unit in the OpenAPI description and in ``x-unit``; values that are
  not canonical metrics carry the unit in their name (``fillRate_per_h``, ``distance_km``).
- Times are ISO-8601 with an offset (UTC, ``Z``); the crew page shows them in WITA.
- Every error body is :class:`ErrorOut`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


Utc = Annotated[datetime, AfterValidator(_utc)]
"""A time as the API returns it: UTC, serialised ISO-8601 with ``Z``."""

BinStatus = Literal["ok", "full", "lidOpen", "dropped", "noData"]


def unit(u: str, text: str) -> Any:
    """A field with its unit in the description and as ``x-unit`` in the OpenAPI schema."""
    return Field(None, description=f"{text} [{u}]", json_schema_extra={"x-unit": u})


class FieldErrorOut(BaseModel):
    """One invalid parameter: where (``["query", "limit"]``) and what is wrong."""

    loc: list[str]
    msg: str


class ErrorOut(BaseModel):
    """Every error response: a message a person can act on (and, for 422, the bad fields)."""

    detail: str
    errors: list[FieldErrorOut] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no API token, or an unknown or revoked one"},
    403: {"model": ErrorOut, "description": "the token's role may not do this"},
    422: {"model": ErrorOut, "description": "a parameter is not valid; `detail` says which and why"},
}
"""Responses every authenticated route may give (used as router-level ``responses``)."""

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such item"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "not possible in its state"}}
STORE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "the means are not set up: run `lorong storage retention apply`"},
    502: {"model": ErrorOut, "description": "InfluxDB refused the query"},
    503: {"model": ErrorOut, "description": "InfluxDB is not reachable"},
}


class ComponentHealth(BaseModel):
    """Reachability of one dependency."""

    ok: bool
    detail: str = ""


class HealthOut(BaseModel):
    """``GET /health``: ``status`` is ``ok`` when every component answers, else ``degraded``; the
    components only for a request with a token (see :mod:`api.routes.health`)."""

    status: Literal["ok", "degraded"]
    broker: ComponentHealth | None = None
    influxdb: ComponentHealth | None = None
    database: ComponentHealth | None = None


class DeviceOut(BaseModel):
    """A registered device.

    Units: lat/lon WGS84 degrees; depth_mm and blind_zone_mm millimetres; capacity_l litres;
    full_threshold a 0..1 fraction; report_interval_s seconds.
    """

    id: str
    kind: Literal["bin", "air"]
    city_id: str = Field(description="the device's city (`lorong cities list`)")
    model: str
    codec: str | None
    lat: float | None = unit("deg", "WGS84 latitude")
    lon: float | None = unit("deg", "WGS84 longitude")
    kecamatan: str
    kelurahan: str = ""
    street: str = ""
    landmark: str = ""
    depth_mm: float | None = unit("mm", "sensor face to empty bin floor")
    blind_zone_mm: float = Field(0.0, description="sensor minimum range [mm]", json_schema_extra={"x-unit": "mm"})
    capacity_l: float | None = unit("L", "bin volume")
    waste_kind: str | None = None
    full_threshold: float | None = unit("1", "per-device full threshold, fraction 0..1 (null: city default)")
    report_interval_s: int = Field(description="expected seconds between uplinks [s]",
                                   json_schema_extra={"x-unit": "s"})
    status: Literal["in_stock", "active", "maintenance", "retired"]
    firmware: str = ""
    installed_at: Utc | None = None
    installed_by: str = ""
    last_seen: Utc | None = None
    created_at: Utc
    updated_at: Utc


class BinOut(BaseModel):
    """Latest state of one bin (FIWARE WasteContainer names), from the SQL ``device_latest`` table.

    ``status``: ``full`` at or above ``fullThreshold``; ``dropped`` when the sensor reports tilt;
    ``lidOpen`` when it reports an open lid; ``noData`` when never heard from; else ``ok``
    (FIWARE WasteContainer.status, with ``full`` and ``noData`` added). ``stale`` is true when the
    last reading is older than three report intervals.
    """

    id: str
    kecamatan: str
    kelurahan: str = ""
    street: str = ""
    landmark: str = ""
    lat: float | None = unit("deg", "WGS84 latitude")
    lon: float | None = unit("deg", "WGS84 longitude")
    fillingLevel: float | None = unit("1", "fill level, fraction 0..1 of the usable depth; null if emptied since")
    distance: float | None = unit("mm", "sensor to waste surface")
    batteryLevel: float | None = unit("1", "battery, fraction 0..1")
    temperature: float | None = unit("degC", "temperature in the bin")
    dateObserved: Utc | None = Field(None, description="time of the latest reading")
    status: BinStatus
    stale: bool
    fullThreshold: float = Field(description="fill fraction at which this bin counts as full [1]",
                                 json_schema_extra={"x-unit": "1"})
    fillRate_per_h: float | None = unit("1/h", "fill rate, fraction per hour (analytics)")
    expectedFullAt: Utc | None = Field(None, description="when it is expected to reach fullThreshold")
    timeToFull_h: float | None = unit("h", "hours from now to expectedFullAt, 0 when already due")
    dateLastEmptying: Utc | None = Field(None, description="last detected pickup (FIWARE dateLastEmptying)")
    deviceStatus: str = Field("active", description="registry lifecycle status: active, in_stock (out of service), "
                              "maintenance (pulled for repair)")


class StationOut(BaseModel):
    """Latest state of one air-quality station (FIWARE AirQualityObserved names) and its indices.

    ``ispu``/``ispuCategory`` follow Permen LHK P.14/2020; ``usAqi``/``usAqiCategory`` the US EPA
    AQI (2024 breakpoints); categories are the keys of :mod:`analytics.aqi` (``baik``, ``sedang``,
    ``tidak_sehat`` ...; ``good``, ``moderate``, ``usg`` ...).
    """

    id: str
    kecamatan: str
    kelurahan: str = ""
    street: str = ""
    landmark: str = ""
    lat: float | None = unit("deg", "WGS84 latitude")
    lon: float | None = unit("deg", "WGS84 longitude")
    dateObserved: Utc | None = None
    stale: bool
    pm1: float | None = unit("ug/m3", "PM1 mass concentration")
    pm25: float | None = unit("ug/m3", "PM2.5 mass concentration, the latest reading as the sensor sent it")
    pm10: float | None = unit("ug/m3", "PM10 mass concentration, the latest reading as the sensor sent it")
    temperature: float | None = unit("degC", "air temperature")
    relativeHumidity: float | None = unit("1", "relative humidity, fraction 0..1")
    pm25_1h: float | None = unit("ug/m3", "PM2.5 mean of the last hour, each reading humidity-corrected: what "
                                 "pm25_high compares with its limit")
    pm25_24h: float | None = unit("ug/m3", "PM2.5 mean of the last 24 hourly means, humidity-corrected: the "
                                  "concentration ispu and usAqi are computed from (both are 24-hour indices)")
    aqiHours: int | None = Field(None, description="hours with data in that 24-hour mean")
    aqiComplete: bool | None = Field(None, description="true when the 24-hour mean rests on enough hours "
                                     "(analytics.air.MIN_HOURS_24H)")
    ispu: int | None = unit("1", "ISPU index (Indonesia), dimensionless, from the 24-hour means")
    ispuCategory: str | None = None
    usAqi: int | None = unit("1", "US AQI, dimensionless, from the 24-hour means")
    usAqiCategory: str | None = None
    criticalPollutant: str | None = Field(None, description="pollutant with the highest sub-index (pm25, pm10 ...)")


class BinReadingOut(BaseModel):
    """Mean of one bin's readings over one time bucket starting at ``dateObserved``."""

    dateObserved: Utc
    fillingLevel: float | None = unit("1", "mean fill level, fraction 0..1")
    distance: float | None = unit("mm", "mean distance to waste surface")
    batteryLevel: float | None = unit("1", "mean battery, fraction 0..1")
    temperature: float | None = unit("degC", "mean temperature")


class AirReadingOut(BaseModel):
    """Mean of one station's readings over one time bucket starting at ``dateObserved``."""

    dateObserved: Utc
    pm1: float | None = unit("ug/m3", "mean PM1")
    pm25: float | None = unit("ug/m3", "mean PM2.5")
    pm10: float | None = unit("ug/m3", "mean PM10")
    no2: float | None = unit("ug/m3", "mean NO2")
    so2: float | None = unit("ug/m3", "mean SO2")
    o3: float | None = unit("ug/m3", "mean O3")
    co: float | None = unit("ug/m3", "mean CO")
    co2: float | None = unit("ppm", "mean CO2")
    temperature: float | None = unit("degC", "mean temperature")
    relativeHumidity: float | None = unit("1", "mean relative humidity, fraction 0..1")
    pressure: float | None = unit("hPa", "mean pressure")


class _SeriesOut(BaseModel):
    id: str
    start: Utc
    end: Utc
    every: str = Field(description="bucket length, InfluxQL duration (30m, 1h, 1d)")
    aggregate: Literal["mean"] = "mean"
    source: Literal["raw", "hourly", "daily"] = Field(
        "raw", description="what was averaged: raw readings, or the hourly (daily) means (windows over 7 days or "
                           "older than the raw readings' retention, with `every` a whole number of hours (days)); "
                           "buckets of whole days start at local midnight of the device's city")
    units: dict[str, str] = Field(description="unit of every metric in `readings`")


class BinReadingsOut(_SeriesOut):
    """``GET /bins/{id}/readings``: InfluxQL ``mean()`` per ``GROUP BY time(every)``; empty buckets left out."""

    readings: list[BinReadingOut]


class AirReadingsOut(_SeriesOut):
    """``GET /air/stations/{id}/readings``: InfluxQL ``mean()`` per ``GROUP BY time(every)``."""

    readings: list[AirReadingOut]


class AlertOut(BaseModel):
    """An alert (ThingsBoard alarm model); times ISO-8601 with offset."""

    id: int
    device_id: str
    kecamatan: str
    city_id: str | None = Field(None, description="the city of the alert's device")
    type: str
    severity: Literal["critical", "major", "minor", "warning"]
    status: Literal["active", "cleared"]
    acknowledged: bool
    started_at: Utc
    updated_at: Utc
    ack_at: Utc | None
    ack_by: str | None
    cleared_at: Utc | None
    cleared_by: str | None
    count: int
    details: dict[str, Any]
    kelurahan: str = ""
    street: str = ""
    landmark: str = Field("", description="what a crew sees there (a mosque, a market gate), from the registry")
    lat: float | None = unit("deg", "WGS84 latitude of the device")
    lon: float | None = unit("deg", "WGS84 longitude of the device")


class ClearIn(BaseModel):
    """Body of ``POST /alerts/{id}/clear``: a person's clear says why (its history keeps it; the demo's
    city reads "emptied" as a bin emptied). Surrounding white space is dropped; a blank reason is a 422."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not dropped

    reason: str = Field(max_length=200, description="why it was cleared (\"emptied\", \"false alarm\")")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a clear needs a reason: say why (\"emptied\", \"false alarm\", ...)")
        return value.strip()


class AlertHistoryOut(BaseModel):
    """One change of an alert: what (``action``: opened, escalated, deescalated, acknowledged,
    cleared), when, who (``actor``: ``system`` or the token's ``role:name``) and why (``reason``,
    empty when none was given)."""

    at: Utc
    action: str
    actor: str
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class WordsOut(BaseModel):
    """What a person reads about an alert type in one language."""

    title: str
    action: str = Field(description="what to do about it")


class AlertTypeOut(BaseModel):
    """One alert type of the catalogue (:mod:`lorong.core.alerts`)."""

    name: str
    severities: list[Literal["critical", "major", "minor", "warning"]] = Field(
        description="the severities it may be raised with, least severe first")
    role: Literal["crew", "officer", "technician", "supervisor"] = Field(description="the role that acts on it")
    kind: Literal["bin", "air", "device", "city"]
    source: str = Field(description="what raises it: an analytics rule module, or api (a person's report)")
    cleared_by_emptying: bool = Field(description="a person's \"emptied\" for the bin clears it")
    words: dict[str, WordsOut] = Field(description="by language: id (Bahasa Indonesia), en")


class AlertTypesOut(BaseModel):
    """``GET /alerts/types``: the catalogue, the words of the crew's "can't empty" reasons and of the
    severities."""

    types: list[AlertTypeOut]
    cant_empty_reasons: dict[str, dict[str, str]] = Field(description="reason -> language -> words")
    severity_words: dict[str, dict[str, str]] = Field(description="severity -> language -> word")


class RouteStopOut(BaseModel):
    """One stop of a collection route, in visiting order."""

    order: int = Field(description="1 for the first stop")
    id: str
    kecamatan: str = ""
    kelurahan: str = ""
    street: str = ""
    landmark: str = ""
    lat: float | None = unit("deg", "WGS84 latitude")
    lon: float | None = unit("deg", "WGS84 longitude")
    fillingLevel: float | None = unit("1", "latest fill level, fraction 0..1; null when emptied since that reading")
    fillRate_per_h: float | None = unit("1/h", "fill rate, fraction per hour (analytics)")
    expectedFillingLevel: float | None = unit("1", "fill level expected on arrival, fraction 0..1")
    eta: Utc | None = Field(None, description="expected arrival (stops still to do)")
    emptiedAt: Utc | None = Field(None, description="when it was emptied this day (a person's report or a pickup)")
    problem: str | None = Field(None, description="why it could not be emptied (an active cant_empty alert)")
    demand_l: float | None = unit("L", "waste the plan expects to collect here")


class RouteOut(BaseModel):
    """A planned collection route for one vehicle of one city on one day (``day`` is a calendar day in
    the city's time zone)."""

    id: int
    day: str
    city_id: str | None = Field(None, description="the city of the plan; null: a plan saved before plans had one")
    vehicle: int
    distance_km: float = Field(description="planned driving distance [km]", json_schema_extra={"x-unit": "km"})
    created_at: Utc
    load_l: float | None = unit("L", "planned load of the vehicle")
    capacity_l: float | None = unit("L", "vehicle capacity")
    depot: list[float] | None = Field(None, description="start and end of the route, [lat, lon] WGS84 degrees")
    stops: list[RouteStopOut]


class TokenIn(BaseModel):
    """``POST /tokens``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not dropped

    name: str = Field(min_length=1, max_length=64, pattern=r"\S", description="who holds it")
    role: Literal["crew", "officer", "technician", "supervisor", "admin"]
    city_id: str | None = Field(None, max_length=32, description="the one city it sees; null: every city "
                                "(an admin scoped to a city makes tokens of that city only)")
    kecamatan: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=100,
        description="the token's area: it sees and acts on bins and alerts of these kecamatan only "
                    "(of its city, when it has one); empty for the whole city")


class TokenOut(BaseModel):
    """An API token without its secret."""

    id: int
    name: str
    role: str
    city_id: str | None = None
    area: list[str] | None = Field(None, description="kecamatan the token is limited to; null for the whole city")
    created_at: Utc
    revoked_at: Utc | None
    last_used_at: Utc | None


class TokenCreatedOut(TokenOut):
    """A new token: ``token`` is shown only in this response."""

    token: str
