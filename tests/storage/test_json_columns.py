"""JSON columns are read with orjson, and a document orjson refuses (a NaN an older release stored
before derived values were made JSON-safe) still reads as the standard library reads it."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from lorong.storage.db import json_loads
from lorong.storage.tables import DeviceLatestRow, DeviceRow


def test_json_columns_read_back_and_a_stored_nan_still_reads(sessions: sessionmaker[Session]) -> None:
    at = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    metrics = {"fillingLevel": [0.7037, 1795989131000], "temperature": [26.8, 1795989131000]}
    derived = {"full_at": "2026-11-30T01:33:40.834378+00:00", "fill_rate_per_h": 0.02633, "ok": True, "n": None}
    with sessions.begin() as s:
        for dev in ("B-1", "B-2"):
            s.add(DeviceRow(id=dev, kind="bin", status="active", city_id="makassar", created_at=at, updated_at=at))
        s.add(DeviceLatestRow(device_id="B-1", ts=at, metrics=metrics, derived=derived))
        s.add(DeviceLatestRow(device_id="B-2", ts=at, metrics={}, derived={}))
    with sessions.begin() as s:  # as an older release wrote it: json.dumps' bare NaN
        s.execute(text("UPDATE device_latest SET derived = '{\"pm25_1h\": NaN, \"ispu\": 51}' WHERE device_id = 'B-2'"))
    with sessions() as s:
        rows = {r.device_id: r for r in s.query(DeviceLatestRow)}
        assert rows["B-1"].metrics == metrics and rows["B-1"].derived == derived
        assert rows["B-1"].metrics["fillingLevel"][0] == 0.7037
        assert math.isnan(rows["B-2"].derived["pm25_1h"]) and rows["B-2"].derived["ispu"] == 51
    assert json_loads(b'{"a": [1, 2.5e-3]}') == {"a": [1, 0.0025]}
