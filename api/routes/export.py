"""``/export/readings``: readings in bulk as CSV or Parquet for officers (:mod:`lorong.storage.export`).

The body is streamed as InfluxDB answers, one day at a time, so memory stays bounded for a year of
a city. The first piece is produced before the response starts, so an unreachable InfluxDB is a
503 like on every other route; one that fails midway ends the transfer early (the client sees a
truncated chunked body, not a complete file).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from api.deps import ContextDep, Exporter
from api.errors import InvalidRequest
from api.query import resolve_city, resolve_kecamatan
from api.schemas import ERRORS, STORE
from lorong.core.model import utcnow
from lorong.storage import export
from lorong.storage.kecamatan import known_kecamatan

router = APIRouter(prefix="/export", tags=["export"], responses=ERRORS)

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
"""Content type per format (Parquet: IANA registration of 2024)."""


@router.get("/readings", response_class=StreamingResponse, responses={
    **STORE, 200: {"description": "one row per reading: time, device_id, city, kecamatan, kind, metric, value, unit",
                   "content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
def export_readings(
    ctx: ContextDep,
    who: Exporter,
    start: Annotated[AwareDatetime, Query(alias="from", description="first time, ISO-8601 with offset")],
    end: Annotated[AwareDatetime, Query(alias="to", description="end of the range (not included)")],
    format: Literal["csv", "parquet"] = "csv",
    resolution: Literal["raw", "hourly", "daily"] = Query(
        "raw", description="raw readings (kept raw_days), or hourly or daily means (kept for years)"),
    kecamatan: str | None = Query(None, max_length=64, description="only devices in this kecamatan"),
    city: str | None = Query(None, max_length=64, description="only this city; ignored while readings carry no "
                                                              "city tag (one city per deployment)"),
) -> StreamingResponse:
    """Readings of ``[from, to)`` as a CSV or Parquet download, streamed (officers and admins). A token
    scoped to a city exports its city's (403 for another city), a token with an area its area's (403
    for a ``kecamatan`` outside it). A ``kecamatan`` no registered device is in is a 422 naming the
    known ones (compared without case, as ``/devices`` does), and so is a ``city`` not in the registry
    (:func:`lorong.storage.export.match_city`, which ``lorong export`` uses too)."""
    city = resolve_city(ctx.sessions, who.city, city, "exports readings of")  # not registered: 422, not a header
    if start >= end:
        raise InvalidRequest(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    try:
        export.check_span(start, end)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    raw_days = ctx.settings.influx.raw_days
    if resolution == "raw" and start < utcnow() - timedelta(days=raw_days + 1):
        raise InvalidRequest(f"raw readings are kept {raw_days} days: for older times ask resolution=hourly or daily")
    if kecamatan is not None:  # a name no device has is a mistake, not an empty file (422 listing the known ones)
        with ctx.sessions() as s:
            kecamatan = resolve_kecamatan(kecamatan, known_kecamatan(s, city), city)
        who.require_filter(kecamatan)  # a token with an area: another kecamatan is a 403
    sel = export.Selection(start, end, resolution, kecamatan, city, area=who.area)
    headers = {"Content-Disposition": f'attachment; filename="lorong-readings-{start:%Y%m%dT%H%M}-'
                                      f'{end:%Y%m%dT%H%M}-{resolution}.{format}"'}
    if city is not None and not export.city_filter_applies(ctx.influx, sel):
        headers["Lorong-City-Filter"] = "ignored: readings carry no city tag (one city per deployment)"
    pieces = export.chunks(export.rows(ctx.influx, sel), format)
    first = next(pieces)  # InfluxDB errors before the response starts become 502/503
    return StreamingResponse(itertools.chain([first], pieces), media_type=MEDIA_TYPES[format], headers=headers)
