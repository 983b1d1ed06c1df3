"""A small Makassar scenario, written to InfluxDB with Lorong's own line-protocol writer.

"Now" is :data:`NOW` (2025-12-10 00:00 UTC = 08:00 WITA); every time below is relative to it.
Names come from :mod:`lorong.core.schema`, as the ingester and the analytics job write them. Every device
point carries ``city=makassar``; :func:`second_city_lines` adds a second city (Parepare) for the
city variable's tests.

Bins (``waste_container``; ``rx_ms`` = point time + 2 s; battery per bin):

=====  ==============  ==========================================  =======
bin    kecamatan       fillingLevel at (hours before now)          battery
=====  ==============  ==========================================  =======
B1     Mariso          0.40 @3h, 0.70 @2h, 0.85 @1h                0.90
B2     Mariso          0.20 @3h, 0.30 @2h, 0.50 @1.5h              0.80
B3     Tallo           0.90 @3h, 0.96 @2h                          0.12
B4     Ujung Pandang   0.10 @2.5h                                  0.50
B5     Tallo           0.99 @8 days (outside every range)          0.95
B6     Tallo           0.30 @5h (silent since: offline)            0.15
=====  ==============  ==========================================  =======

Air stations (``air_quality``): A1 Tallo pm25/pm10 10/40 @3h, 20/60 @2h50m, 80/160 @1h, battery
0.70; A2 Mariso 5/20 @3h and 300/400 @26h (outside the 24 h range), battery 0.60; A3 Ujung
Pandang 12/30 @2 days (offline), battery 0.05.

Analytics output: ``bin_state`` at 30 min (B1 0.85 full 0 h, B2 0.50 in 12.5 h, B3 0.96 full 0 h,
B4 0.10 not filling) plus stale older points (B1 @1.5h 0.70 in 0.6 h; B4 @3h in 40 h);
``air_index`` A1 70 @1.5h then 150 @30min, A2 20 @30min; pickups (``collection``): B1 Dec 5
02:00Z and Dec 8 23:00Z, B2 Dec 5 17:00Z (Dec 6 WITA), B3 Dec 7 01:00Z, B1 @8 days (outside);
``alert_event`` (action): B3 bin_full critical opened @2h, B1 bin_full major opened @1h, A1
pm25_high major opened @5h and cleared @2h, A2 offline minor opened @4h.

Ingester self-metrics every 30 s from 5 min before now (k = 0..7): ``ingest-1`` received 60k,
stored 120k, spool_depth 0,5,10,0,0,40,20,0, write_ms 3..10, rejects bad_json 0,0,1,1,3,3,3,7 and
out_of_range 0,0,0,2,2,2,2,2. ``ingest-2`` restarts: received 500, 560, 20, 80 at 5, 4, 3, 2 min
(stored twice that), spool 0, write 2 ms; bad_json 1 @4m, 4 @3m.
"""

from __future__ import annotations

from dashboards.panels import CITY_TZ
from lorong.core import schema
from lorong.core.model import utc_from_ms
from lorong.core.settings import InfluxSettings
from lorong.storage import retention
from lorong.storage.influx import InfluxClient, line

NOW = 1_765_324_800_000
"""2025-12-10T00:00:00Z."""

S, M, H, D = 1000, 60_000, 3_600_000, 86_400_000

BIN_READINGS = {
    "B1": ("Mariso", [(3 * H, 0.40), (2 * H, 0.70), (1 * H, 0.85)], 0.90),
    "B2": ("Mariso", [(3 * H, 0.20), (2 * H, 0.30), (90 * M, 0.50)], 0.80),
    "B3": ("Tallo", [(3 * H, 0.90), (2 * H, 0.96)], 0.12),
    "B4": ("Ujung Pandang", [(150 * M, 0.10)], 0.50),
    "B5": ("Tallo", [(8 * D, 0.99)], 0.95),
    "B6": ("Tallo", [(5 * H, 0.30)], 0.15),
}
"""bin -> (kecamatan, [(age ms, fill)], battery)."""

AIR_READINGS = {
    "A1": ("Tallo", [(3 * H, 10.0, 40.0), (170 * M, 20.0, 60.0), (1 * H, 80.0, 160.0)], 0.70),
    "A2": ("Mariso", [(3 * H, 5.0, 20.0), (26 * H, 300.0, 400.0)], 0.60),
    "A3": ("Ujung Pandang", [(2 * D, 12.0, 30.0)], 0.05),
}
"""station -> (kecamatan, [(age ms, pm25, pm10)], battery)."""

LOCATION = {"B1": (-5.1477, 119.4327), "B2": (-5.1611, 119.4112), "B3": (-5.1123, 119.4419),
            "B4": (-5.1352, 119.4136)}
"""bin -> (lat, lon), WGS84 degrees."""

RX_DELAY = 2 * S
KEC = {**{b: k for b, (k, _, _) in BIN_READINGS.items()}, **{a: k for a, (k, _, _) in AIR_READINGS.items()}}


CITY = "makassar"


def _tags(device: str, **extra: str) -> dict[str, str]:
    return {schema.TAG_DEVICE: device, schema.TAG_KECAMATAN: KEC[device], schema.TAG_CITY: CITY, **extra}


def lines() -> list[str]:
    """The whole scenario as line protocol (ms timestamps)."""
    out: list[str] = []
    for dev, (_, readings, battery) in BIN_READINGS.items():
        for age, fill in readings:
            t = NOW - age
            out.append(line(schema.MEASUREMENT_BIN, _tags(dev), {
                schema.FIELD_FILL: fill, schema.FIELD_BATTERY: battery, schema.FIELD_RX: float(t + RX_DELAY)}, t))
    for dev, (_, readings, battery) in AIR_READINGS.items():
        for age, pm25, pm10 in readings:
            t = NOW - age
            out.append(line(schema.MEASUREMENT_AIR, _tags(dev), {
                schema.FIELD_PM25: pm25, schema.FIELD_PM10: pm10, schema.FIELD_BATTERY: battery,
                schema.FIELD_RX: float(t + RX_DELAY)}, t))
    states = [("B1", 30 * M, 0.85, 0.0), ("B1", 90 * M, 0.70, 0.6), ("B2", 30 * M, 0.50, 12.5),
              ("B3", 30 * M, 0.96, 0.0), ("B4", 30 * M, 0.10, None), ("B4", 3 * H, 0.10, 40.0)]
    for dev, age, fill, hours in states:
        lat, lon = LOCATION[dev]
        fields: dict[str, float] = {schema.FIELD_LAT: lat, schema.FIELD_LON: lon, schema.FIELD_FILL: fill}
        if hours is not None:
            fields[schema.FIELD_HOURS_TO_FULL] = hours
        out.append(line(schema.MEASUREMENT_BIN_STATE, _tags(dev), fields, NOW - age))
    for dev, age, ispu in [("A1", 90 * M, 70.0), ("A1", 30 * M, 150.0), ("A2", 30 * M, 20.0)]:
        out.append(line(schema.MEASUREMENT_AIR_INDEX, _tags(dev), {schema.FIELD_ISPU: ispu}, NOW - age))
    pickups = [("B1", 1_764_900_000_000, 0.9, 0.05), ("B1", 1_765_234_800_000, 0.8, 0.0),
               ("B2", 1_764_954_000_000, 0.7, 0.1), ("B3", 1_765_069_200_000, 0.95, 0.02),
               ("B1", NOW - 8 * D, 0.9, 0.0)]
    for dev, t, before, after in pickups:
        out.append(line(schema.MEASUREMENT_COLLECTION, _tags(dev),
                        {schema.FIELD_BEFORE: before, schema.FIELD_AFTER: after}, t))
    alerts = [("B3", 2 * H, "bin_full", "critical", "opened", 11), ("B1", 1 * H, "bin_full", "major", "opened", 12),
              ("A1", 5 * H, "pm25_high", "major", "opened", 13), ("A2", 4 * H, "offline", "minor", "opened", 14),
              ("A1", 2 * H, "pm25_high", "major", "cleared", 13)]
    for dev, age, type_, severity, action, alert_id in alerts:
        status = "cleared" if action == "cleared" else "active"
        out.append(line(schema.MEASUREMENT_ALERT, _tags(dev, **{schema.TAG_TYPE: type_, schema.TAG_SEVERITY: severity}),
                        {schema.FIELD_ALERT_STATUS: status, schema.FIELD_ALERT_ACTION: action,
                         schema.FIELD_ALERT_ID: alert_id}, NOW - age))
    out += _ingest_lines()
    return out


def _ingest_lines() -> list[str]:
    out: list[str] = []
    spool = [0, 5, 10, 0, 0, 40, 20, 0]
    bad_json = [0, 0, 1, 1, 3, 3, 3, 7]
    out_of_range = [0, 0, 0, 2, 2, 2, 2, 2]
    for k in range(8):
        t = NOW - 5 * M + k * 30 * S
        tags = {schema.TAG_INSTANCE: "ingest-1"}
        out.append(line(schema.MEASUREMENT_INGEST, tags, {
            schema.FIELD_RECEIVED: 60.0 * k, schema.FIELD_STORED: 120.0 * k,
            schema.FIELD_SPOOL_DEPTH: float(spool[k]), schema.FIELD_WRITE_MS: float(3 + k)}, t))
        for reason, counts in (("bad_json", bad_json), ("out_of_range", out_of_range)):
            out.append(line(schema.MEASUREMENT_REJECTS, {**tags, schema.TAG_REASON: reason},
                            {schema.FIELD_REJECT_COUNT: float(counts[k])}, t))
    for minutes, received in ((5, 500.0), (4, 560.0), (3, 20.0), (2, 80.0)):
        out.append(line(schema.MEASUREMENT_INGEST, {schema.TAG_INSTANCE: "ingest-2"}, {
            schema.FIELD_RECEIVED: received, schema.FIELD_STORED: 2 * received,
            schema.FIELD_SPOOL_DEPTH: 0.0, schema.FIELD_WRITE_MS: 2.0}, NOW - minutes * M))
    for minutes, count in ((4, 1.0), (3, 4.0)):
        out.append(line(schema.MEASUREMENT_REJECTS, {schema.TAG_INSTANCE: "ingest-2", schema.TAG_REASON: "bad_json"},
                        {schema.FIELD_REJECT_COUNT: count}, NOW - minutes * M))
    return out


SECOND_CITY = "parepare"

SECOND_BINS = {
    "P1": ("Soreang", [(3 * H, 0.50), (1 * H, 0.90)], 0.10),
    "P2": ("Ujung", [(4 * H, 0.20)], 0.60),
}
"""Parepare's bins: bin -> (kecamatan, [(age ms, fill)], battery). P2 is offline (silent 4 h),
P1 has the lowest battery of both cities."""

SECOND_AIR = {"Q1": ("Soreang", [(3 * H, 40.0, 90.0), (150 * M, 60.0, 110.0), (1 * H, 30.0, 70.0)], 0.40)}
"""Parepare's station: station -> (kecamatan, [(age ms, pm25, pm10)], battery)."""


def second_city_lines() -> list[str]:
    """Parepare as line protocol: the readings above, plus ``bin_state`` P1 @30 min (0.90, full,
    -4.0135/119.6255), ``air_index`` Q1 95 @30 min, a pickup of P1 Dec 8 03:00Z (0.85 -> 0.05), and
    alerts P1 bin_full critical opened @1h, Q1 pm25_high major opened @2h."""
    def tags(dev: str, kec: str, **extra: str) -> dict[str, str]:
        return {schema.TAG_DEVICE: dev, schema.TAG_KECAMATAN: kec, schema.TAG_CITY: SECOND_CITY, **extra}

    out: list[str] = []
    for dev, (kec, readings, battery) in SECOND_BINS.items():
        for age, fill in readings:
            t = NOW - age
            out.append(line(schema.MEASUREMENT_BIN, tags(dev, kec), {
                schema.FIELD_FILL: fill, schema.FIELD_BATTERY: battery, schema.FIELD_RX: float(t + RX_DELAY)}, t))
    for dev, (kec, air, battery) in SECOND_AIR.items():
        for age, pm25, pm10 in air:
            t = NOW - age
            out.append(line(schema.MEASUREMENT_AIR, tags(dev, kec), {
                schema.FIELD_PM25: pm25, schema.FIELD_PM10: pm10, schema.FIELD_BATTERY: battery,
                schema.FIELD_RX: float(t + RX_DELAY)}, t))
    out.append(line(schema.MEASUREMENT_BIN_STATE, tags("P1", "Soreang"), {
        schema.FIELD_LAT: -4.0135, schema.FIELD_LON: 119.6255, schema.FIELD_FILL: 0.90,
        schema.FIELD_HOURS_TO_FULL: 0.0}, NOW - 30 * M))
    out.append(line(schema.MEASUREMENT_AIR_INDEX, tags("Q1", "Soreang"), {schema.FIELD_ISPU: 95.0}, NOW - 30 * M))
    out.append(line(schema.MEASUREMENT_COLLECTION, tags("P1", "Soreang"),
                    {schema.FIELD_BEFORE: 0.85, schema.FIELD_AFTER: 0.05}, 1_765_162_800_000))
    for dev, kec, age, type_, severity, alert_id in (("P1", "Soreang", 1 * H, "bin_full", "critical", 21),
                                                     ("Q1", "Soreang", 2 * H, "pm25_high", "major", 22)):
        out.append(line(schema.MEASUREMENT_ALERT, tags(dev, kec, **{schema.TAG_TYPE: type_,
                                                                     schema.TAG_SEVERITY: severity}),
                        {schema.FIELD_ALERT_STATUS: "active", schema.FIELD_ALERT_ACTION: "opened",
                         schema.FIELD_ALERT_ID: alert_id}, NOW - age))
    return out


KEPT = InfluxSettings(raw_days=36500, hourly_days=0, daily_days=0)
"""Retention for the scenario: its points are dated 2025, so raw readings must be kept long."""


def seed(influx: InfluxClient, cities: int = 1) -> None:
    """Write the scenario (``cities=2``: and Parepare) into ``influx``'s database, laid out as
    ``lorong storage retention apply`` does (policies raw, hourly, daily), and backfill the hourly and
    daily means of the readings, as ``lorong storage retention backfill`` does."""
    now = utc_from_ms(NOW)
    retention.apply(influx, KEPT, CITY_TZ, now=now)
    influx.write_lines(lines() + (second_city_lines() if cities == 2 else []))
    retention.backfill(influx, CITY_TZ, utc_from_ms(NOW - 9 * D), now, now=now)
