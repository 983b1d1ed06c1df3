"""InfluxDB measurement, tag and field names: defined here once, used everywhere.

Layout (InfluxDB 1.x line protocol, ms precision):

- ``waste_container`` one point per bin uplink; tags ``device_id``, ``kecamatan``; fields are
  canonical metrics (``fillingLevel``, ``distance``, ...) plus ``rx_ms`` (receive time).
- ``air_quality`` one point per air-station uplink; same tags; fields ``pm25``, ``pm10`` ...
- ``collection`` one point per detected pickup; tags ``device_id``, ``kecamatan``; fields
  ``before`` and ``after`` (fill fractions).
- ``alert_event`` one point per alert state change; tags ``device_id``, ``kecamatan``,
  ``type``, ``severity``; fields ``status`` (string), ``alert_id``.
- ``ingest_stats`` the ingester's self-metrics; tag ``instance``; fields ``received``,
  ``stored``, ``rejected``, ``spool_depth``, ``write_ms``; tag ``reason`` on ``ingest_rejects``.
"""

from __future__ import annotations

from core.model import DeviceKind

MEASUREMENT_BIN = "waste_container"
MEASUREMENT_AIR = "air_quality"
MEASUREMENT_COLLECTION = "collection"
MEASUREMENT_ALERT = "alert_event"
MEASUREMENT_INGEST = "ingest_stats"
MEASUREMENT_REJECTS = "ingest_rejects"

TAG_DEVICE = "device_id"
TAG_KECAMATAN = "kecamatan"
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

MEASUREMENT_BY_KIND: dict[DeviceKind, str] = {
    DeviceKind.BIN: MEASUREMENT_BIN,
    DeviceKind.AIR: MEASUREMENT_AIR,
}
"""Which measurement a device kind's readings go to."""
