"""Sensor.Community (luftdaten.info) airRohr push JSON (``airrohr``).

The airRohr firmware (opendata-stuttgart/sensors-software, airrohr-firmware) POSTs this body to
its APIs; bridges such as tbs1-bo/feinstaub-json-mqtt-bridge republish it over MQTT. Topic
``airrohr/<anything>`` (the topic level is the bridge's choice and not used). Payload::

    {"esp8266id": "11545355", "software_version": "NRZ-2020-133",
     "sensordatavalues": [{"value_type": "SDS_P1", "value": "6.35"},
                          {"value_type": "BME280_pressure", "value": "99505.19"}, ...]}

- Device id ``esp8266-<chip id>``, the id the firmware sends in its ``X-Sensor`` header;
  ``esp8266id`` is a string of digits from the firmware, a number from some bridges (kotori).
- Values are strings; a non-numeric value of a known type (``"No Sensor"``, ``"Invalid
  Reading"``) becomes ``nan``, which validation rejects as ``sensor_sentinel``.
- ``<sensor>_P1`` is PM10, ``_P2`` PM2.5, ``_P0`` PM1 (µg/m³); ``_P4`` (PM4) has no canonical
  metric and is skipped. BME280/BMP280/BMP180 pressure is in Pa. ``temperature``/``humidity``
  without prefix are the DHT22's. ``signal`` is the Wi-Fi RSSI (dBm). Value-type names as in the
  firmware and in Home Assistant's sensor tables (home-assistant/core,
  homeassistant/components/altruist/const.py).
- Housekeeping types (``samples``, ``min_micro``, ``max_micro``, ``interval``, GPS) and unknown
  types are ignored. When two sensors report one metric (DHT22 and BME280 temperature), the
  first in the list wins (:func:`ingest.formats._common.first_per_metric`).
- The body has no time: readings take the receive time.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from ingest.formats._common import first_per_metric, load_json_object, topic_parts
from ingest.vendor_keys import as_float
from lorong.core.errors import ParseError
from lorong.core.model import RawReading, Uplink

NAME = "airrohr"
TOPICS = ("airrohr/+",)
DEVICE_LEVEL = 1
"""Level of ``TOPICS`` holding the device id (0-based): the one place that says so."""

VALUE_TYPES: dict[str, tuple[str, str]] = {
    "SDS_P1": ("pm10", "ug/m3"), "SDS_P2": ("pm25", "ug/m3"),
    "PMS_P0": ("pm1", "ug/m3"), "PMS_P1": ("pm10", "ug/m3"), "PMS_P2": ("pm25", "ug/m3"),
    "HPM_P1": ("pm10", "ug/m3"), "HPM_P2": ("pm25", "ug/m3"),
    "SPS30_P0": ("pm1", "ug/m3"), "SPS30_P1": ("pm10", "ug/m3"), "SPS30_P2": ("pm25", "ug/m3"),
    "SEN5X_P0": ("pm1", "ug/m3"), "SEN5X_P1": ("pm10", "ug/m3"), "SEN5X_P2": ("pm25", "ug/m3"),
    "BME280_temperature": ("temperature", "degC"), "BME280_humidity": ("relativeHumidity", "%"),
    "BME280_pressure": ("pressure", "Pa"),
    "BMP280_temperature": ("temperature", "degC"), "BMP280_pressure": ("pressure", "Pa"),
    "BMP_temperature": ("temperature", "degC"), "BMP_pressure": ("pressure", "Pa"),
    "SHT3X_temperature": ("temperature", "degC"), "SHT3X_humidity": ("relativeHumidity", "%"),
    "HTU21D_temperature": ("temperature", "degC"), "HTU21D_humidity": ("relativeHumidity", "%"),
    "HECA_temperature": ("temperature", "degC"), "HECA_humidity": ("relativeHumidity", "%"),
    "DS18B20_temperature": ("temperature", "degC"),
    "temperature": ("temperature", "degC"), "humidity": ("relativeHumidity", "%"),
    "SCD4x_co2": ("co2", "ppm"),
    "signal": ("rssi", "dBm"),
}
"""airRohr ``value_type`` -> (canonical metric, unit of the value as sent)."""

_CHIP_ID = re.compile(r"[0-9]{1,20}")


def device_id(chip_id: object) -> str:
    """``esp8266-<chip id>`` from the ``esp8266id`` field (digits, as a string or a number).

    Raises:
        ParseError: ``bad_envelope`` when missing or not a non-negative integer.
    """
    text = str(chip_id) if isinstance(chip_id, int) and not isinstance(chip_id, bool) else chip_id
    if not isinstance(text, str) or not _CHIP_ID.fullmatch(text.strip()):
        raise ParseError("bad_envelope", f"{NAME}: esp8266id must be a chip id (digits), got {chip_id!r:.40}")
    return f"esp8266-{text.strip()}"


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one airRohr push body.

    Args:
        payload: UTF-8 JSON object as the firmware POSTs it.
        topic: ``airrohr/<anything>``.
        received_at: unused (the body has no time; validation uses the receive time).

    Returns:
        one :class:`Uplink` without time or frame counter.

    Raises:
        ParseError: ``bad_topic``, ``bad_json``, ``bad_envelope`` (no chip id, no
            ``sensordatavalues`` list, an entry without a string ``value_type``).
    """
    topic_parts(topic, NAME, "airrohr/+")
    obj = load_json_object(payload, NAME)
    dev = device_id(obj.get("esp8266id"))
    values = obj.get("sensordatavalues")
    if not isinstance(values, list):
        raise ParseError("bad_envelope", f"{NAME}: sensordatavalues must be a list")
    readings: list[RawReading] = []
    for i, item in enumerate(values):
        if not isinstance(item, dict) or not isinstance(item.get("value_type"), str):
            raise ParseError("bad_envelope", f"{NAME}: sensordatavalues[{i}] needs a string value_type")
        known = VALUE_TYPES.get(item["value_type"])
        if known is None:
            continue
        value = as_float(item.get("value"))
        readings.append(RawReading(known[0], value if value is not None else math.nan, known[1]))
    return [Uplink(device_id=dev, readings=first_per_metric(readings))]
