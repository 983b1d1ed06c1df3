"""Per-run state points for Grafana: ``bin_state`` (map and time-to-full) and ``air_index`` (ISPU).

Grafana reads InfluxDB only, while the analytics results live in the SQL table
``device_latest.derived``; each job run therefore also writes one point per bin and per station,
stamped with the run's time (layout in :mod:`lorong.core.schema`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import line
from lorong.storage.tables import DeviceLatestRow, DeviceRow


def hours_to_full(full_at: str | None, level: float | None, threshold: float, now: datetime) -> float | None:
    """Hours from ``now`` until the bin reaches ``threshold``: 0 when already at or above it,
    ``None`` when the fill is not rising (no ``full_at``), never negative."""
    if level is not None and level >= threshold:
        return 0.0
    if not full_at:
        return None
    return max(0.0, (datetime.fromisoformat(full_at) - now).total_seconds() / 3600.0)


def state_lines(rows: Sequence[DeviceRow], latest: Mapping[str, DeviceLatestRow],
                derived: Mapping[str, Mapping[str, Any]], now: datetime, default_threshold: float) -> list[str]:
    """Line-protocol points of one run.

    Args:
        rows: active devices from the registry (lat/lon in WGS84 degrees).
        latest: ``device_latest`` rows by device id (``metrics["fillingLevel"] = [value, ms]``).
        derived: this run's analytics results by device id (``full_at`` ISO time, ``ispu``).
        now: the run's time, tz-aware; the points' timestamp.
        default_threshold: full threshold for bins without an override (fraction).

    Returns:
        ``bin_state`` points (fields ``fillingLevel``, ``lat``, ``lon``, ``hours_to_full`` when
        known) and ``air_index`` points (field ``ispu``); devices with nothing to say are skipped.
    """
    out: list[str] = []
    ts = to_ms(now)
    for row in rows:
        tags = {schema.TAG_DEVICE: row.id, schema.TAG_KECAMATAN: row.kecamatan or "", schema.TAG_CITY: row.city_id}
        values = derived.get(row.id, {})
        metrics = latest[row.id].metrics if row.id in latest else {}
        if row.kind == "bin":
            fields: dict[str, float] = {}
            level = float(metrics["fillingLevel"][0]) if "fillingLevel" in metrics else None
            if level is not None:
                fields[schema.FIELD_FILL] = level
            if row.lat is not None and row.lon is not None:
                fields[schema.FIELD_LAT] = float(row.lat)
                fields[schema.FIELD_LON] = float(row.lon)
            htf = hours_to_full(values.get("full_at"), level, row.full_threshold or default_threshold, now)
            if htf is not None:
                fields[schema.FIELD_HOURS_TO_FULL] = round(htf, 3)
            if level is not None:
                out.append(line(schema.MEASUREMENT_BIN_STATE, tags, fields, ts))
        elif row.kind == "air" and values.get("ispu") is not None:
            out.append(line(schema.MEASUREMENT_AIR_INDEX, tags, {schema.FIELD_ISPU: float(values["ispu"])}, ts))
    return out
