"""Analytics jobs: each reads InfluxDB with InfluxQL aggregates and keeps alerts in the SQL DB.

A job is safe to run twice: it only opens an alert when none is active for that device and type
(a repeat extends it), and clears alerts whose condition has ended.

Thresholds:
- full bin: ``fillingLevel`` >= 0.8 (settings, per-device override); critical above 0.95
  (overflow risk). 0.8 is the common "full" trigger of smart-bin services (the Enevo data
  in tests/data notes that its 100 % equals 80 % physically full).
- PM2.5: hourly mean above 55.4 ug/m3, the top of the ISPU "Sedang" band
  (Permen LHK P.14/2020, Lampiran I).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from analytics.alerts import AlertBook, Notifier
from analytics.latest import refresh_latest
from core import schema
from core.model import DeviceKind, utcnow
from core.settings import AnalyticsSettings
from devices.registry import list_devices, to_info
from storage.influx import InfluxClient, quote_ident

log = logging.getLogger(__name__)


@dataclass
class JobReport:
    """What one run did: alerts opened/extended/cleared by type, latest rows refreshed."""

    opened: dict[str, int] = field(default_factory=dict)
    extended: dict[str, int] = field(default_factory=dict)
    cleared: dict[str, int] = field(default_factory=dict)
    latest_rows: int = 0

    def count(self, bucket: dict[str, int], type_: str) -> None:
        """Add one to ``bucket[type_]``."""
        bucket[type_] = bucket.get(type_, 0) + 1


def _last_by_device(influx: InfluxClient, measurement: str, fld: str, window: str) -> dict[str, float]:
    q = (f"SELECT last({quote_ident(fld)}) FROM {quote_ident(measurement)} WHERE time > now() - {window} "
         f"GROUP BY {quote_ident(schema.TAG_DEVICE)}")
    return {s.tags[schema.TAG_DEVICE]: float(s.values[0][1]) for s in influx.query(q) if s.values}


def _mean_by_device(influx: InfluxClient, measurement: str, fld: str, window: str) -> dict[str, float]:
    q = (f"SELECT mean({quote_ident(fld)}) FROM {quote_ident(measurement)} WHERE time > now() - {window} "
         f"GROUP BY {quote_ident(schema.TAG_DEVICE)}")
    return {s.tags[schema.TAG_DEVICE]: float(s.values[0][1]) for s in influx.query(q)
            if s.values and s.values[0][1] is not None}


def run_once(sessions: sessionmaker[Session], influx: InfluxClient, cfg: AnalyticsSettings,
             notifiers: list[Notifier] | None = None) -> JobReport:
    """Run every alert rule once and refresh the latest-state table.

    Returns:
        a :class:`JobReport`.

    Raises:
        StoreUnavailable: InfluxDB cannot be reached (nothing is changed).
    """
    report = JobReport()
    now = utcnow()
    fills = _last_by_device(influx, schema.MEASUREMENT_BIN, schema.FIELD_FILL, "1d")
    pm25 = _mean_by_device(influx, schema.MEASUREMENT_AIR, schema.FIELD_PM25, "1h")
    with sessions() as session:
        book = AlertBook(session, notifiers or [])
        for row in list_devices(session):
            dev = to_info(row)
            if dev.kind is DeviceKind.BIN and dev.device_id in fills:
                level = fills[dev.device_id]
                limit = dev.full_threshold or cfg.full_threshold
                if level >= limit:
                    sev = "critical" if level >= cfg.overflow_threshold else "major"
                    _, what = book.raise_(dev.device_id, "bin_full", sev, now,
                                          {"fillingLevel": level, "threshold": limit}, dev.kecamatan)
                    report.count(report.opened if what == "opened" else report.extended, "bin_full")
                elif book.clear_condition(dev.device_id, "bin_full", now, f"fillingLevel {level:.2f} < {limit}"):
                    report.count(report.cleared, "bin_full")
            if dev.kind is DeviceKind.AIR and dev.device_id in pm25:
                mean = pm25[dev.device_id]
                if mean > cfg.pm25_limit:
                    _, what = book.raise_(dev.device_id, "pm25_high", "major", now,
                                          {"pm25_1h_mean": round(mean, 2), "limit": cfg.pm25_limit}, dev.kecamatan)
                    report.count(report.opened if what == "opened" else report.extended, "pm25_high")
                elif book.clear_condition(dev.device_id, "pm25_high", now, f"pm25 1 h mean {mean:.1f}"):
                    report.count(report.cleared, "pm25_high")
        report.latest_rows = refresh_latest(session, influx)
        session.commit()
        book.publish()
    return report
