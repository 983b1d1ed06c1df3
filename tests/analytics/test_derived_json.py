"""What the job keeps in ``device_latest.derived`` is valid JSON (RFC 8259 has no NaN or Infinity):
a station whose last hour was all above the humidity correction's 95 % RH has no corrected PM2.5,
and a NaN stored there made SQLite's JSON functions fail for every query over the stations
(``GET /air/stations`` answered 503 all night; found by a new user)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from analytics.jobs import write_derived
from devices.registry import DeviceIn, add_device
from lorong.core.model import utcnow
from lorong.storage.db import is_unavailable
from lorong.storage.tables import DeviceLatestRow


def test_a_nan_is_kept_as_null_and_the_json_stays_valid(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="AIR-1", kind="air"))
        s.add(DeviceLatestRow(device_id="AIR-1", ts=utcnow(), metrics={}, derived={"ispu": 51}))
    with sessions.begin() as s:
        latest = {r.device_id: r for r in s.scalars(select(DeviceLatestRow))}
        write_derived(latest, {"AIR-1": {"pm25_1h": math.nan, "aqi": {"us": math.inf, "hours": [1.0, -math.inf]}}})
    with sessions() as s:
        assert s.execute(text("SELECT json_valid(derived) FROM device_latest")).scalar_one() == 1
        assert s.execute(text("SELECT json_extract(derived, '$.ispu') FROM device_latest")).scalar_one() == 51
        row = s.get(DeviceLatestRow, "AIR-1")
        assert row is not None
        assert row.derived == {"ispu": 51, "pm25_1h": None, "aqi": {"us": None, "hours": [1.0, None]}}


def test_a_sql_error_is_no_unavailable_database(sessions: sessionmaker[Session]) -> None:
    """SQLite's "malformed JSON" is a fault of the query or the data, not a database that did not
    answer: it must not read as "restarting or failing over; try again in a minute"."""
    with sessions() as s, pytest.raises(OperationalError) as err:
        s.execute(text("SELECT json_extract('{\"a\": NaN}', '$.a')"))
    assert "malformed JSON" in str(err.value)
    assert not is_unavailable(err.value)
