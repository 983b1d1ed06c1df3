"""InfluxDB measurement, tag and field names: defined here once, used everywhere.

Layout (InfluxDB 1.x line protocol, ms precision):

Every point of a device (and of its alerts, pickups and state) also carries the tag ``city``, its
city id from the registry (left out only for a device whose city is not known, such as in unit tests).

- ``waste_container`` one point per bin uplink; tags ``device_id``, ``kecamatan``; fields are
  canonical metrics (``fillingLevel``, ``distance``, ...) plus ``rx_ms`` (receive time).
- ``air_quality`` one point per air-station uplink; same tags; fields ``pm25``, ``pm10`` ...
- ``collection`` one point per detected pickup; tags ``device_id``, ``kecamatan``; fields
  ``before`` and ``after`` (fill fractions).
- ``alert_event`` one point per alert state change; tags ``device_id``, ``kecamatan``,
  ``type``, ``severity``; fields ``status`` (string), ``action`` (string: what changed, e.g.
  ``opened``, ``cleared``), ``alert_id``.
- ``ingest_stats`` the ingester's self-metrics; tag ``instance``; fields ``received``,
  ``stored``, ``rejected``, ``spool_depth``, ``write_ms``; tag ``reason`` on ``ingest_rejects``.
- ``bin_state`` one point per bin per analytics run (for the Grafana geomap and time-to-full
  panels); tags ``device_id``, ``kecamatan``; fields ``lat``, ``lon`` (WGS84 degrees, from the
  registry), ``fillingLevel`` (latest fill fraction), ``hours_to_full`` (hours from the point's
  time until the bin reaches its full threshold at the current fill rate; 0 when already full;
  omitted when the fill is not rising).
- ``air_index`` one point per air station per analytics run; tags ``device_id``, ``kecamatan``;
  field ``ispu`` (integer-valued overall ISPU, P.14/2020, as ``analytics.aqi`` reports it).

Retention policies (:mod:`lorong.storage.retention`): every measurement is written to ``raw`` (the
database default, kept ``raw_days``); the readings measurements (:data:`DOWNSAMPLED`) also have
hourly and daily means under the same measurement, tag and field names in ``hourly`` and ``daily``.
"""

from __future__ import annotations

from lorong.core.model import DeviceKind

MEASUREMENT_BIN = "waste_container"
MEASUREMENT_AIR = "air_quality"
MEASUREMENT_COLLECTION = "collection"
MEASUREMENT_ALERT = "alert_event"
MEASUREMENT_INGEST = "ingest_stats"
MEASUREMENT_REJECTS = "ingest_rejects"
MEASUREMENT_BIN_STATE = "bin_state"
MEASUREMENT_AIR_INDEX = "air_index"

RP_RAW = "raw"
RP_HOURLY = "hourly"
RP_DAILY = "daily"

TAG_DEVICE = "device_id"
TAG_KECAMATAN = "kecamatan"
TAG_CITY = "city"
TAG_TYPE = "type"
TAG_SEVERITY = "severity"
TAG_INSTANCE = "instance"
TAG_REASON = "reason"

FIELD_RX = "rx_ms"
FIELD_FILL = "fillingLevel"
FIELD_DISTANCE = "distance"
FIELD_PM25 = "pm25"
FIELD_PM10 = "pm10"
FIELD_BATTERY = "batteryLevel"
FIELD_TEMPERATURE = "temperature"
FIELD_LAT = "lat"
FIELD_LON = "lon"
FIELD_HOURS_TO_FULL = "hours_to_full"
FIELD_ISPU = "ispu"
FIELD_BEFORE = "before"
FIELD_AFTER = "after"
FIELD_ALERT_STATUS = "status"
FIELD_ALERT_ID = "alert_id"
FIELD_ALERT_ACTION = "action"
FIELD_RECEIVED = "received"
FIELD_STORED = "stored"
FIELD_REJECTED = "rejected"
FIELD_SPOOL_DEPTH = "spool_depth"
FIELD_WRITE_MS = "write_ms"
FIELD_REJECT_COUNT = "count"

MEASUREMENT_BY_KIND: dict[DeviceKind, str] = {
    DeviceKind.BIN: MEASUREMENT_BIN,
    DeviceKind.AIR: MEASUREMENT_AIR,
}
"""Which measurement a device kind's readings go to."""

DOWNSAMPLED: tuple[str, ...] = (MEASUREMENT_BIN, MEASUREMENT_AIR)
"""Measurements whose readings get hourly and daily means (the sensors' own values)."""
