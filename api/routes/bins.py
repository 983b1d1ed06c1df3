"""``/bins``: latest fill level, status, time-to-full and last pickup of every bin; aggregated history."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime
from pydantic_core import to_json

from api.auth import Principal
from api.bin_state import load_bins, pick
from api.deps import ContextDep, DeviceId, Reader, SessionDep, device_zone, scoped_device
from api.errors import NotFound
from api.query import resolve_city_in, resolve_kecamatan_in
from api.readings import BIN_METRICS, EVERY_PATTERN, day_offset_s, day_zone, mean_series, source, units, window
from api.schemas import ERRORS, NOT_FOUND, STORE, BinOut, BinReadingOut, BinReadingsOut
from lorong.core import schema
from lorong.core.model import DeviceKind, utcnow
from lorong.storage.tables import DeviceRow

router = APIRouter(prefix="/bins", tags=["bins"], responses=ERRORS)

Every = Annotated[str, Query(pattern=EVERY_PATTERN, description="bucket length: a number and s, m, h, d or w",
                             examples=["1h"])]
Start = Annotated[AwareDatetime | None, Query(description="ISO-8601 with offset; default end - 24 h")]
End = Annotated[AwareDatetime | None, Query(description="ISO-8601 with offset; default now")]


def _bin(session: SessionDep, who: Principal, device_id: str) -> DeviceRow:
    row = scoped_device(session, who, device_id)
    if row.kind != DeviceKind.BIN.value:
        raise NotFound(f"{row.id} is an air station, not a bin: use /air/stations/{row.id}")
    who.require_area(row.kecamatan, f"bin {row.id}")
    return row


@router.get("", response_model=list[BinOut])
async def bins(
    request: Request,
    ctx: ContextDep,
    who: Reader,
    kecamatan: str | None = Query(None, max_length=64, description="only bins in this kecamatan"),
    min_level: float | None = Query(None, ge=0.0, le=1.0, description="only bins at or above this fillingLevel (0..1)"),
    city: str | None = Query(None, max_length=64, description="only this city's bins (a city's token: its own)"),
    limit: int = Query(100, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=1_000_000),
    device_status: Literal["active", "in_stock", "maintenance", "all"] = Query(
        "active", description="registry status of the bins listed: active (in service, the default), in_stock "
        "(taken out of service), maintenance (pulled for repair), or all (retired bins are never listed)"),
) -> Response:
    """Bins with their latest ``fillingLevel`` (0..1), fullest first; bins never heard from last. A
    city's token sees its city's (``city``: one city's, for a token of every city; another city's: 403;
    one not registered: 422). For a token with an area, the bins of its area only (``kecamatan`` outside
    it: 403). Only bins in service (registry status ``active``) unless ``device_status`` asks for others:
    a bin taken out of service keeps its last reading, which is no live fill level.

    Served from a snapshot of ``device_latest`` at most a few seconds old (see :mod:`api.bin_state`
    and :mod:`api.pages`); async because the answer is a slice of that in-memory snapshot, with no
    database query (a ``kecamatan`` not spelled as any bin's asks the registry, see
    :func:`api.query.resolve_kecamatan`).
    """
    city = await resolve_city_in(ctx.sessions, who.city, city)
    entries = await ctx.bins.aitems()
    if kecamatan and not any(e.kecamatan == kecamatan and city in (None, e.city) for e in entries):
        kecamatan = await resolve_kecamatan_in(ctx.sessions, kecamatan, city)  # else the snapshot has it as sent
    who.require_filter(kecamatan)

    def render() -> tuple[bytes, dict[str, str]]:
        now = utcnow()
        mine = entries if city is None else [e for e in entries if e.city == city]
        chosen = pick(mine, kecamatan, min_level, limit, offset, who.area,
                      None if device_status == "all" else device_status)
        return to_json([e.render(now) for e in chosen]), {}

    key = ("bins", city, kecamatan, min_level, limit, offset, who.area, device_status)
    return ctx.pages.respond(key, entries, request.headers.get("accept-encoding", ""), render)


@router.get("/{device_id}", response_model=BinOut, responses=NOT_FOUND)
def one_bin(device_id: DeviceId, ctx: ContextDep, session: SessionDep, who: Reader) -> BinOut:
    """One bin's latest state, straight from the database (404 for another city's bin, 403 outside the
    token's area)."""
    row = _bin(session, who, device_id)
    [entry] = load_bins(session, ctx.settings.analytics.full_threshold, row.id)
    return BinOut.model_validate(entry.render(utcnow()))


@router.get("/{device_id}/readings", response_model=BinReadingsOut, responses={**NOT_FOUND, **STORE})
def bin_readings(device_id: DeviceId, ctx: ContextDep, session: SessionDep, who: Reader,
                 start: Start = None, end: End = None, every: Every = "1h") -> BinReadingsOut:
    """A bin's readings averaged in InfluxDB: ``mean()`` over ``GROUP BY time(every)``, oldest first; windows
    over 7 days or older than the raw retention average the hourly or daily means (``source``); day
    buckets are local days of the device's city. 404 for another city's bin, 403 outside the token's area."""
    row = _bin(session, who, device_id)
    win = window(start, end, every)
    rp = source(win, ctx.settings.influx.raw_days, hourly_days=ctx.settings.influx.hourly_days)
    zone = device_zone(session, row, ctx.settings.analytics.timezone)
    rows = mean_series(ctx.influx, schema.MEASUREMENT_BIN, row.id, BIN_METRICS, win, rp,
                       day_offset_s(win.every, zone, win.start), day_zone(win.every, zone, win.start))
    return BinReadingsOut(id=row.id, start=win.start, end=win.end, every=win.every, source=rp,
                          units=units(BIN_METRICS),
                          readings=[BinReadingOut.model_validate(r) for r in rows])
