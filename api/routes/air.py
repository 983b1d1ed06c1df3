"""``/air/stations``: latest ISPU and US AQI of every air station; aggregated history."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.auth import Principal
from api.deps import ContextDep, DeviceId, Reader, SessionDep, device_zone, scoped_device
from api.errors import NotFound
from api.query import resolve_kecamatan
from api.readings import AIR_METRICS, day_offset_s, day_zone, mean_series, source, units, window
from api.routes.bins import End, Every, Start
from api.schemas import ERRORS, NOT_FOUND, STORE, AirReadingOut, AirReadingsOut, StationOut
from api.state import station_out, station_pairs
from lorong.core import schema
from lorong.core.model import DeviceKind, utcnow
from lorong.storage.kecamatan import known_kecamatan
from lorong.storage.tables import DeviceLatestRow, DeviceRow

router = APIRouter(prefix="/air/stations", tags=["air"], responses=ERRORS)


def _station(session: SessionDep, who: Principal, device_id: str) -> DeviceRow:
    row = scoped_device(session, who, device_id)
    if row.kind != DeviceKind.AIR.value:
        raise NotFound(f"{row.id} is a bin, not an air station: use /bins/{row.id}")
    return row


@router.get("", response_model=list[StationOut])
def stations(
    session: SessionDep,
    who: Reader,
    kecamatan: str | None = Query(None, max_length=64, description="only stations in this kecamatan"),
    limit: int = Query(100, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> list[StationOut]:
    """Air stations with their latest values and indices, highest ISPU first (no index last)."""
    if kecamatan:
        kecamatan = resolve_kecamatan(kecamatan, known_kecamatan(session, who.city), who.city)
    now = utcnow()
    return [station_out(d, latest, now) for d, latest in station_pairs(session, kecamatan, limit, offset, who.city)]


@router.get("/{device_id}", response_model=StationOut, responses=NOT_FOUND)
def station(device_id: DeviceId, session: SessionDep, who: Reader) -> StationOut:
    """One station's latest values and indices."""
    row = _station(session, who, device_id)
    return station_out(row, session.get(DeviceLatestRow, row.id), utcnow())


@router.get("/{device_id}/readings", response_model=AirReadingsOut, responses={**NOT_FOUND, **STORE})
def station_readings(device_id: DeviceId, ctx: ContextDep, session: SessionDep, who: Reader,
                     start: Start = None, end: End = None, every: Every = "1h") -> AirReadingsOut:
    """A station's readings averaged in InfluxDB: ``mean()`` over ``GROUP BY time(every)``, oldest first;
    windows over 7 days or older than the raw retention average the hourly or daily means (``source``); day
    buckets are local days of the device's city."""
    row = _station(session, who, device_id)
    win = window(start, end, every)
    rp = source(win, ctx.settings.influx.raw_days, hourly_days=ctx.settings.influx.hourly_days)
    zone = device_zone(session, row, ctx.settings.analytics.timezone)
    rows = mean_series(ctx.influx, schema.MEASUREMENT_AIR, row.id, AIR_METRICS, win, rp,
                       day_offset_s(win.every, zone, win.start), day_zone(win.every, zone, win.start))
    return AirReadingsOut(id=row.id, start=win.start, end=win.end, every=win.every, source=rp,
                          units=units(AIR_METRICS),
                          readings=[AirReadingOut.model_validate(r) for r in rows])
