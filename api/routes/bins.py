"""``/bins``: latest fill level of every bin, fullest first."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import SessionDep
from api.schemas import BinOut
from core.model import DeviceKind, utc_from_ms
from devices.registry import list_devices
from storage.tables import DeviceLatestRow

router = APIRouter(prefix="/bins", tags=["bins"])


@router.get("", response_model=list[BinOut])
def bins(
    session: SessionDep,
    kecamatan: str | None = None,
    min_level: float = Query(0.0, ge=0.0, le=1.0, description="only bins at or above this fillingLevel"),
) -> list[BinOut]:
    """Every bin with its latest ``fillingLevel`` (0..1), fullest first; bins never heard from last."""
    latest = {r.device_id: r for r in session.scalars(select(DeviceLatestRow))}
    out: list[BinOut] = []
    for d in list_devices(session, DeviceKind.BIN, kecamatan):
        row = latest.get(d.id)
        m = row.metrics if row else {}
        fill = m.get("fillingLevel")
        level = float(fill[0]) if fill else None
        if min_level > 0 and (level is None or level < min_level):
            continue
        out.append(BinOut(
            id=d.id, kecamatan=d.kecamatan, lat=d.lat, lon=d.lon, fillingLevel=level,
            distance_mm=float(m["distance"][0]) if "distance" in m else None,
            batteryLevel=float(m["batteryLevel"][0]) if "batteryLevel" in m else None,
            dateObserved=utc_from_ms(fill[1]) if fill else None,
        ))
    out.sort(key=lambda b: (b.fillingLevel is None, -(b.fillingLevel or 0.0), b.id))
    return out
