"""Response schemas: FIWARE names (``fillingLevel``, ``dateObserved``), ISO-8601 times with offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ComponentHealth(BaseModel):
    """Reachability of one dependency."""

    ok: bool
    detail: str = ""


class HealthOut(BaseModel):
    """``GET /health``: ``status`` is ``ok`` when every component answers, else ``degraded``."""

    status: str
    broker: ComponentHealth
    influxdb: ComponentHealth
    database: ComponentHealth


class DeviceOut(BaseModel):
    """A registered device. Units: lat/lon degrees, depth_mm and blind_zone_mm millimetres."""

    id: str
    kind: str
    model: str
    codec: str | None
    lat: float | None
    lon: float | None
    kecamatan: str
    kelurahan: str = ""
    street: str = ""
    depth_mm: float | None
    blind_zone_mm: float = 0.0
    status: str
    report_interval_s: int
    last_seen: datetime | None = None


class BinOut(BaseModel):
    """Latest state of one bin: ``fillingLevel`` is a 0..1 fraction at ``dateObserved``."""

    id: str
    kecamatan: str
    lat: float | None
    lon: float | None
    fillingLevel: float | None = Field(None, description="fraction 0..1")
    distance_mm: float | None = None
    batteryLevel: float | None = Field(None, description="fraction 0..1")
    dateObserved: datetime | None = None


class AlertOut(BaseModel):
    """An alert (ThingsBoard model); times ISO-8601 with offset."""

    id: int
    device_id: str
    kecamatan: str
    type: str
    severity: str
    status: str
    acknowledged: bool
    started_at: datetime
    updated_at: datetime
    ack_at: datetime | None
    ack_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    count: int
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """Every error response: a message a person can act on."""

    detail: str
