"""Seed data for the API tests: devices, latest rows, alerts and route plans written straight to SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook
from devices.registry import DeviceIn, add_device
from lorong.core.model import to_ms
from lorong.storage.tables import AlertRow, DeviceLatestRow, RoutePlanRow


def add_bin(s: Session, device_id: str, kecamatan: str = "Wajo", lat: float | None = -5.13,
            lon: float | None = 119.41, **kw: Any) -> None:
    """Register a bin (1000 mm deep, 150 mm blind zone unless overridden)."""
    add_device(s, DeviceIn(id=device_id, kind="bin", kecamatan=kecamatan, lat=lat, lon=lon,
                           depth_mm=kw.pop("depth_mm", 1000), blind_zone_mm=kw.pop("blind_zone_mm", 150), **kw))


def add_station(s: Session, device_id: str, kecamatan: str = "Panakkukang", **kw: Any) -> None:
    """Register an air station."""
    add_device(s, DeviceIn(id=device_id, kind="air", kecamatan=kecamatan, lat=-5.14, lon=119.44, **kw))


def set_latest(s: Session, device_id: str, at: datetime, derived: dict[str, Any] | None = None,
               **metrics: float) -> None:
    """Write a ``device_latest`` row: every metric observed at ``at``."""
    ms = to_ms(at)
    s.add(DeviceLatestRow(device_id=device_id, ts=at, metrics={k: [v, ms] for k, v in metrics.items()},
                          derived=derived or {}))


def raise_alert(s: Session, device_id: str, type_: str, severity: str, at: datetime, kecamatan: str = "Wajo",
                **details: Any) -> AlertRow:
    """Open an alert through :class:`AlertBook` (as the analytics job does)."""
    row, _ = AlertBook(s).raise_(device_id, type_, severity, at, dict(details), kecamatan)
    return row


def add_route(s: Session, day: str, vehicle: int, stops: Any, distance_km: float, at: datetime) -> None:
    """A route plan row."""
    s.add(RoutePlanRow(day=day, vehicle=vehicle, stops=stops, distance_km=distance_km, created_at=at))


def fleet(sessions: sessionmaker[Session], now: datetime) -> None:
    """A small city: five bins in three kecamatan, two stations, three alerts.

    Bins: MKS-BIN-0001 Wajo 0.94 (full), MKS-BIN-0002 Wajo 0.55 (tilted), MKS-BIN-0003 Tallo 0.81
    (full), MKS-BIN-0004 Mariso 0.20 (lid open, heard 2 h ago: stale), MKS-BIN-0005 Tallo never heard.
    """
    with sessions.begin() as s:
        add_bin(s, "MKS-BIN-0001", "Wajo", street="Jl. Somba Opu")
        add_bin(s, "MKS-BIN-0002", "Wajo", lat=-5.135, lon=119.416)
        add_bin(s, "MKS-BIN-0003", "Tallo", lat=-5.11, lon=119.43, full_threshold=0.75)
        add_bin(s, "MKS-BIN-0004", "Mariso", lat=-5.16, lon=119.40)
        add_bin(s, "MKS-BIN-0005", "Tallo", lat=None, lon=None)
        add_station(s, "MKS-AIR-01", "Panakkukang")
        add_station(s, "MKS-AIR-02", "Tamalate")
        set_latest(s, "MKS-BIN-0001", now - timedelta(minutes=5), fillingLevel=0.94, distance=201.0,
                   batteryLevel=0.81, derived={"fill_rate_per_h": 0.02,
                                               "full_at": (now - timedelta(hours=1)).isoformat(),
                                               "last_emptying": (now - timedelta(days=1)).isoformat()})
        set_latest(s, "MKS-BIN-0002", now - timedelta(minutes=5), fillingLevel=0.55, tilt=1.0,
                   derived={"fill_rate_per_h": 0.05, "full_at": (now + timedelta(hours=5)).isoformat()})
        set_latest(s, "MKS-BIN-0003", now - timedelta(minutes=5), fillingLevel=0.81, temperature=31.5)
        set_latest(s, "MKS-BIN-0004", now - timedelta(hours=2), fillingLevel=0.2, lidOpen=1.0)
        set_latest(s, "MKS-AIR-01", now - timedelta(minutes=10), pm25=70.0, pm10=90.0,
                   derived={"ispu": 158, "ispu_category": "tidak_sehat", "critical_pollutant": "pm25",
                            "us_aqi": 158, "us_aqi_category": "Unhealthy", "pm25_1h": 63.456, "pm25_24h": 68.04,
                            "aqi_hours": 22, "aqi_complete": True})
        set_latest(s, "MKS-AIR-02", now - timedelta(minutes=10), pm25=12.0,
                   derived={"ispu": 43.2, "critical_pollutant": ["pm25"], "us_aqi": 57})
        raise_alert(s, "MKS-BIN-0001", "bin_full", "major", now - timedelta(minutes=30), "Wajo", fillingLevel=0.94)
        raise_alert(s, "MKS-BIN-0003", "bin_full", "major", now - timedelta(minutes=20), "Tallo", fillingLevel=0.81)
        raise_alert(s, "MKS-AIR-01", "pm25_high", "major", now - timedelta(minutes=10), "Panakkukang",
                    pm25_1h_mean=70.0)
