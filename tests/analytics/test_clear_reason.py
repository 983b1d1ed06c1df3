"""Issue 14 item 27: a ``bin_full`` clear reason read ``fillingLevel 0.70 < 0.70``.

The clear level is ``threshold - full_hysteresis`` = 0.8 - 0.1 = 0.7000000000000001 in floats, so a
bin standing at 0.70 clears (what clears is the rule's business and stays as it is), and both sides
printed with two decimals read as a false inequality. Reproduced against real InfluxDB and SQLite.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from analytics.jobs import run_once
from analytics.rules.bin_full import clear_reason
from devices.registry import DeviceIn, add_device
from lorong.core import schema
from lorong.core.model import to_ms
from lorong.core.settings import AnalyticsSettings
from lorong.storage.influx import InfluxClient, line
from lorong.storage.tables import AlertHistoryRow, AlertRow

pytestmark = pytest.mark.integration


def _reads_true(reason: str) -> bool:
    """True when ``reason`` (``fillingLevel A < B`` or ``<=``) is a true statement about the printed numbers."""
    m = re.fullmatch(r"fillingLevel (\d+\.\d+) (<|<=) (\d+\.\d+) \(clear level\)", reason)
    assert m, reason
    a, op, b = float(m[1]), m[2], float(m[3])
    return a < b if op == "<" else a <= b


def test_clear_reason_at_the_clear_level_reads_true(sessions: Any, influx: InfluxClient) -> None:
    now = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)
    with sessions.begin() as s:
        add_device(s, DeviceIn(id="B", kind="bin", depth_mm=1000, installed_at=now - timedelta(days=30)))
    # full for 40 min, then settling waste (no fall big enough to be a pickup) down to 0.70
    levels = [0.9, 0.9, 0.9, 0.9, 0.85, 0.8, 0.75, 0.7, 0.7, 0.7]
    pts = [(now - timedelta(minutes=10 * (len(levels) - 1 - k)), v) for k, v in enumerate(levels)]
    influx.write_lines([line(schema.MEASUREMENT_BIN, {schema.TAG_DEVICE: "B"}, {"fillingLevel": v}, to_ms(t))
                        for t, v in pts])
    cfg = AnalyticsSettings()
    assert run_once(sessions, influx, cfg, now=pts[3][0]).opened == {"bin_full": 1}
    assert run_once(sessions, influx, cfg, now=now).cleared == {"bin_full": 1}
    with sessions() as s:
        alert = s.scalars(select(AlertRow)).one()
        [hist] = s.scalars(select(AlertHistoryRow).where(AlertHistoryRow.alert_id == alert.id,
                                                         AlertHistoryRow.action == "cleared")).all()
    reason = hist.details["reason"]
    assert reason == "fillingLevel 0.700 <= 0.700 (clear level)"
    assert _reads_true(reason)


@pytest.mark.parametrize("latest,low", [(0.7, 0.8 - 0.1), (0.6995, 0.7), (0.6994, 0.7), (0.65, 0.7),
                                        (0.0, 0.7), (0.69999999, 0.7000000000000001), (0.8499, 0.85)])
def test_clear_reason_never_reads_as_a_false_inequality(latest: float, low: float) -> None:
    assert latest < low
    assert _reads_true(clear_reason(latest, low))
