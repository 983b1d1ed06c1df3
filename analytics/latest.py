"""The latest value of every metric per device, kept in the SQL table ``device_latest``.

An InfluxQL ``last(*)`` over thousands of series takes hundreds of milliseconds (measured
~450 ms for 5,000 devices on InfluxDB 1.6.7), too slow for an API answer; the analytics job
refreshes this table once per run, and the API reads it. Over 30 days of 10-minute data the
per-series ``ORDER BY time DESC LIMIT 1`` takes seconds (bench/analytics_job.py), so the job
takes each device's newest point from the recent raw points it reads anyway
(:func:`latest_from_frame`) and asks InfluxDB with the long lookback only for devices that are
not in them and have no row yet. The same refresh moves ``devices.last_seen`` forward to each
device's newest point (:func:`advance_last_seen`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from analytics.frames import recent_points
from lorong.core import schema
from lorong.core.model import utc_from_ms, utcnow
from lorong.storage.influx import InfluxClient, quote_ident
from lorong.storage.tables import DeviceLatestRow, DeviceRow

LOOKBACK = timedelta(days=30)
"""How far back a device's newest point is looked for when it is not among the recent points."""


def query_latest(influx: InfluxClient, measurement: str, lookback: str = "30d") -> dict[str, dict[str, Any]]:
    """``{device_id: {metric: [value, epoch_ms]}}`` from the newest point of every device.

    ``SELECT * ... ORDER BY time DESC LIMIT 1`` per ``device_id`` series returns the newest point
    with its own time (``last(*)`` would stamp every field with the start of the range). One
    uplink is one point, so the newest point holds the device's current values.
    """
    out: dict[str, dict[str, Any]] = {}
    q = (f"SELECT * FROM {quote_ident(measurement)} WHERE time > now() - {lookback} "
         f"GROUP BY {quote_ident(schema.TAG_DEVICE)} ORDER BY time DESC LIMIT 1")
    for series in influx.query(q):
        device = series.tags.get(schema.TAG_DEVICE, "")
        for row in series.values:
            rec = dict(zip(series.columns, row, strict=True))
            ts = rec.pop("time")
            for col, value in rec.items():
                if value is None or isinstance(value, str) or col in (schema.TAG_KECAMATAN, schema.TAG_CITY,
                                                                      schema.FIELD_RX):
                    continue
                out.setdefault(device, {})[col] = [value, ts]
    return out


def latest_from_frame(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{device_id: {metric: [value, epoch_ms]}}`` from the newest row of each device.

    Args:
        frame: long frame sorted by device_id and time (:func:`analytics.frames.recent_points`).
    """
    if frame.empty:
        return {}
    newest = frame.drop_duplicates("device_id", keep="last")
    ms = newest["time"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64).tolist()
    fields = [c for c in newest.columns if c not in ("device_id", "time")]
    # Python floats and ints column by column (tolist), not numpy scalars row by row: 20,000 devices in
    # tens of ms instead of 0.6-1 s (bench/analytics_job.py); ``v == v`` is False for NaN only
    columns = [(f, newest[f].to_numpy(dtype=float).tolist()) for f in fields]
    out: dict[str, dict[str, Any]] = {}
    for i, device in enumerate(newest["device_id"].tolist()):
        t = ms[i]
        out[str(device)] = {f: [v[i], t] for f, v in columns if v[i] == v[i]}
    return out


def _upsert(rows: dict[str, DeviceLatestRow], session: Session, device_id: str, metrics: dict[str, Any],
            changed: list[dict[str, Any]]) -> None:
    """Add a row, or append the new values of an existing one to ``changed`` (for one executemany,
    :func:`_update_rows`) and set them on the row as if loaded (no second UPDATE at the flush)."""
    ts: datetime = utc_from_ms(max(t for _, t in metrics.values()))
    row = rows.get(device_id)
    if row is None:
        row = DeviceLatestRow(device_id=device_id, ts=ts, metrics=metrics, derived={})
        session.add(row)
        rows[device_id] = row
    elif row.ts != ts or row.metrics != metrics:
        changed.append({"b_id": device_id, "b_ts": ts, "b_metrics": metrics})
        set_committed_value(row, "ts", ts)
        set_committed_value(row, "metrics", metrics)


def _update_rows(session: Session, changed: list[dict[str, Any]]) -> None:
    """One executemany of ``device_latest`` UPDATEs: the ORM's unit of work took seconds for 20,000
    rows (bench/analytics_job.py)."""
    if changed:
        table = cast(Table, DeviceLatestRow.__table__)
        session.execute(update(table).where(table.c.device_id == bindparam("b_id"))
                        .values(ts=bindparam("b_ts"), metrics=bindparam("b_metrics")), changed)


def advance_last_seen(session: Session, newest: dict[str, datetime]) -> int:
    """Set ``devices.last_seen`` to the newest reading time of each device, never moving it back.

    Args:
        session: SQL session (the caller commits).
        newest: device id -> time of its newest reading (tz-aware UTC); ids not in the registry
            are ignored.

    Returns:
        How many devices' ``last_seen`` moved.
    """
    if not newest:
        return 0
    # every device's row, filtered here: an IN list of 20,000 ids took seconds to bind (bench/analytics_job.py)
    have = session.execute(select(DeviceRow.id, DeviceRow.last_seen))
    moves = [{"b_id": d, "b_seen": newest[d]} for d, seen in have
             if d in newest and (seen is None or newest[d] > seen)]
    if moves:  # one executemany of one statement, not one object per device
        table = cast(Table, DeviceRow.__table__)
        session.execute(update(table).where(table.c.id == bindparam("b_id")).values(last_seen=bindparam("b_seen")),
                        moves)
    return len(moves)


def refresh_latest(session: Session, influx: InfluxClient, lookback: str = "30d", now: datetime | None = None,
                   recent: pd.DataFrame | None = None, devices: Sequence[str] = (),
                   rows: dict[str, DeviceLatestRow] | None = None) -> int:
    """Upsert ``device_latest`` for bins and air stations and move each device's
    ``devices.last_seen`` forward to its newest reading (:func:`advance_last_seen`); returns
    ``device_latest`` rows written.

    Args:
        session: SQL session (the caller commits).
        influx: InfluxDB client.
        lookback: InfluxQL duration searched when ``recent`` is not given (relative to the
            server's ``now()``).
        now: the run's time; with ``recent``, points after it are not considered.
        recent: recent raw points of both measurements (long frame); when given, each device's
            newest point comes from it, and InfluxDB is asked (over :data:`LOOKBACK`) only for
            ``devices`` that are neither in it nor in the table.
        devices: registered device ids (see ``recent``).
        rows: the table's rows by device id, if the caller loaded them already; new rows are
            added to it.
    """
    if rows is None:
        rows = {r.device_id: r for r in session.scalars(select(DeviceLatestRow))}
    n = 0
    if recent is None:
        found = {d: m for meas in (schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR)
                 for d, m in query_latest(influx, meas, lookback).items()}
    else:
        found = latest_from_frame(recent)
        missing = [d for d in devices if d not in found and d not in rows]
        if missing:
            end = now or utcnow()
            for meas in (schema.MEASUREMENT_BIN, schema.MEASUREMENT_AIR):
                older = recent_points(influx, meas, end, LOOKBACK, limit=1, devices=missing)
                found.update(latest_from_frame(older))
    changed: list[dict[str, Any]] = []
    for device_id, metrics in found.items():
        if metrics:
            _upsert(rows, session, device_id, metrics, changed)
            n += 1
    _update_rows(session, changed)
    advance_last_seen(session, {d: r.ts for d, r in rows.items()})
    session.flush()
    return n
