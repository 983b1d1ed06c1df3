"""Bin readings written to InfluxDB for the readings tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lorong.core import schema
from lorong.core.model import to_ms
from lorong.storage.influx import InfluxClient, line

T0 = datetime(2026, 11, 28, tzinfo=UTC)
# (device, minutes after T0, fillingLevel, distance mm)
POINTS = [("MKS-BIN-0001", 10, 0.2, 830.0), ("MKS-BIN-0001", 40, 0.4, 660.0), ("MKS-BIN-0001", 65, 0.5, 575.0),
          ("MKS-BIN-0001", 95, 0.7, 405.0), ("MKS-BIN-0001", 195, 0.9, 235.0), ("MKS-BIN-0002", 10, 0.99, 158.5)]


def write_points(influx: InfluxClient) -> None:
    """The bin readings of :data:`POINTS` in the ``waste_container`` measurement."""
    influx.write_lines([line(schema.MEASUREMENT_BIN, {"device_id": d, "kecamatan": "Wajo"},
                             {"fillingLevel": f, "distance": mm}, to_ms(T0 + timedelta(minutes=m)))
                        for d, m, f, mm in POINTS])
