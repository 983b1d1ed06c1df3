"""Validation policy (README "Validation policy"): each rejection with its exact reason code."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from ingest.normalize import fill_level
from ingest.pipeline import Pipeline
from ingest.validate import MISSING_VALUE, SENTINELS, Policy, check_time, is_sentinel, validate
from lorong.core.errors import ValidationError
from lorong.core.model import DeviceInfo, DeviceKind, Message, RawReading

RX = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AIR = DeviceInfo("MKS-AIR-01", DeviceKind.AIR, kecamatan="Panakkukang")
BIN = DeviceInfo("MKS-BIN-0001", DeviceKind.BIN, kecamatan="Wajo", bin_depth_mm=1000.0, blind_zone_mm=150.0)


def reason(raws: list[RawReading], device: DeviceInfo = AIR, fallback: datetime | None = None,
           policy: Policy = Policy()) -> str:
    with pytest.raises(ValidationError) as err:
        validate(raws, device, RX, fallback, policy)
    return err.value.reason


def test_accepts_and_converts() -> None:
    got = validate([RawReading("pm25", 31.5, "ug/m3"), RawReading("relativeHumidity", 78, "%"),
                    RawReading("pressure", 100870, "Pa"), RawReading("temperature", -2.83, "°C")], AIR, RX)
    assert [(r.metric, r.value, r.unit, r.ts, r.received_at) for r in got] == [
        ("pm25", 31.5, "ug/m3", RX, RX), ("relativeHumidity", pytest.approx(0.78), "1", RX, RX),
        ("pressure", pytest.approx(1008.7), "hPa", RX, RX), ("temperature", -2.83, "degC", RX, RX)]


def test_time_precedence_device_then_network_then_receive() -> None:
    dev_ts, ns_ts = RX - timedelta(minutes=2), RX - timedelta(minutes=1)
    (a,) = validate([RawReading("pm25", 1, "ug/m3", dev_ts)], AIR, RX, ns_ts)
    (b,) = validate([RawReading("pm25", 1, "ug/m3")], AIR, RX, ns_ts)
    (c,) = validate([RawReading("pm25", 1, "ug/m3")], AIR, RX)
    assert (a.ts, b.ts, c.ts) == (dev_ts, ns_ts, RX)


def test_distance_yields_fill_level() -> None:
    got = validate([RawReading("distance", 57.5, "cm")], BIN, RX)
    assert [(r.metric, r.value) for r in got] == [("distance", 575.0), ("fillingLevel", 0.5)]


def test_no_readings() -> None:
    assert reason([]) == "no_readings"


def test_unknown_metric() -> None:
    assert reason([RawReading("voltage", 120.1, "V")]) == "unknown_metric"


def test_bad_unit() -> None:
    assert reason([RawReading("temperature", 90, "Far")]) == "bad_unit"
    assert reason([RawReading("pm25", 12, "ppm")]) == "bad_unit"


@pytest.mark.parametrize(("metric", "value", "unit"), [
    ("pm10", 1999.9, "ug/m3"),   # SDS011 above its 0-999.9 range (Sensor.Community archive)
    ("pm25", 999.9, "ug/m3"),    # SDS011 saturated
    ("pm1", 999.9, "ug/m3"),
    ("temperature", -127.0, "degC"),  # DS18B20 disconnected
    ("pm10", -200.0, "ug/m3"),   # UCI missing-value tag
    ("temperature", -200.0, "degC"),
    ("co", -200.0, "mg/m3"),     # in any unit
    ("temperature", math.nan, "degC"),  # "No Sensor" / "Invalid Reading" strings become nan
])
def test_sensor_sentinels(metric: str, value: float, unit: str) -> None:
    assert reason([RawReading(metric, value, unit)]) == "sensor_sentinel"


def test_sentinel_table() -> None:
    assert MISSING_VALUE == -200.0
    assert SENTINELS["pm10"] == (999.9, 1999.9)
    assert is_sentinel("pm25", 999.9) and not is_sentinel("pm25", 999.8) and not is_sentinel("co2", 999.9)


def test_values_next_to_sentinels_pass() -> None:
    got = validate([RawReading("pm10", 999.8, "ug/m3"), RawReading("temperature", -39.9, "degC")], AIR, RX)
    assert [r.value for r in got] == [999.8, -39.9]


@pytest.mark.parametrize(("metric", "value", "unit"), [
    ("temperature", 5760.0, "degC"),       # AM319 history record decoded from the wrong bytes
    ("relativeHumidity", 14080.0, "%"),
    ("co2", 49665.0, "ppm"),
    ("pm25", 6400.0, "ug/m3"),
    ("pm25", -0.1, "ug/m3"),
    ("pressure", 3869.5, "hPa"),
    ("batteryLevel", 101.0, "%"),
    ("distance", 25.0, "m"),
    ("rssi", -250.0, "dBm"),
])
def test_out_of_range(metric: str, value: float, unit: str) -> None:
    assert reason([RawReading(metric, value, unit)]) == "out_of_range"


def test_non_finite() -> None:
    assert reason([RawReading("pm25", math.inf, "ug/m3")]) == "non_finite"
    assert reason([RawReading("pm25", -math.inf, "ug/m3")]) == "non_finite"


def test_future_time_boundary() -> None:
    ok = validate([RawReading("pm25", 1, "ug/m3", RX + timedelta(seconds=300))], AIR, RX)
    assert ok[0].ts == RX + timedelta(seconds=300)
    assert reason([RawReading("pm25", 1, "ug/m3", RX + timedelta(seconds=301))]) == "future_time"
    assert reason([RawReading("pm25", 1, "ug/m3")], fallback=RX + timedelta(hours=1)) == "future_time"


def test_too_old_boundary() -> None:
    ok = validate([RawReading("pm25", 1, "ug/m3", datetime(2020, 1, 1, tzinfo=UTC))], AIR, RX)
    assert ok[0].ts.year == 2020
    assert reason([RawReading("pm25", 1, "ug/m3", datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC))]) == "too_old"


def test_history_record_from_1976_is_too_old_before_out_of_range() -> None:
    """The ThingsBoard AM319 converter's mis-parsed record: 1976 and 5760 degC; time is checked first."""
    ts = datetime.fromtimestamp(214578533, tz=UTC)
    raws = [RawReading("temperature", 23.8, "degC"), RawReading("temperature", 5760.0, "degC", ts)]
    with pytest.raises(ValidationError) as err:
        validate(raws, AIR, RX)
    assert err.value.reason == "too_old"
    assert "1976-10-19" in err.value.detail


def test_policy_limits_are_configurable() -> None:
    strict = Policy(max_future_s=10.0, min_year=2025)
    assert reason([RawReading("pm25", 1, "ug/m3", RX + timedelta(seconds=11))], policy=strict) == "future_time"
    assert reason([RawReading("pm25", 1, "ug/m3", datetime(2024, 6, 1, tzinfo=UTC))], policy=strict) == "too_old"
    check_time(RX + timedelta(seconds=10), RX, strict)


def test_message_rejected_whole() -> None:
    assert reason([RawReading("pm25", 30, "ug/m3"), RawReading("pm10", 1999.9, "ug/m3")]) == "sensor_sentinel"


@pytest.mark.parametrize(("distance_mm", "why"), [(0.0, "sensor_sentinel"), (1201.0, "sensor_sentinel")])
def test_bin_distance_sentinels(distance_mm: float, why: str) -> None:
    assert reason([RawReading("distance", distance_mm, "mm")], device=BIN) == why


def test_fill_level_geometry() -> None:
    assert fill_level(100.0, 1000.0, 150.0) == 1.0
    assert fill_level(1100.0, 1000.0, 150.0) == 0.0
    assert fill_level(575.0, 1000.0, 150.0) == 0.5
    with pytest.raises(ValidationError) as err:
        fill_level(500.0, 100.0, 150.0)
    assert err.value.reason == "bad_geometry"


def _msg(topic: str, body: object, size: int | None = None) -> Message:
    payload = json.dumps(body).encode()
    if size is not None:
        payload = payload + b" " * (size - len(payload))
    return Message(topic, payload, RX)


def test_payload_size_limit() -> None:
    pipe = Pipeline({AIR.device_id: AIR}, max_payload_bytes=1024)
    body = {"metrics": {"pm25": 12.0}}
    assert pipe.process(_msg("lorong/v1/MKS-AIR-01/up", body, 1024)).error is None
    res = pipe.process(_msg("lorong/v1/MKS-AIR-01/up", body, 1025))
    assert res.error is not None and res.error.reason == "too_large"
    assert res.error.detail == "1025 bytes > 1024"


def test_unknown_device_and_unknown_format() -> None:
    pipe = Pipeline({AIR.device_id: AIR})
    res = pipe.process(_msg("lorong/v1/MKS-AIR-99/up", {"metrics": {"pm25": 12.0}}))
    assert res.error is not None and res.error.reason == "unknown_device"
    res = pipe.process(_msg("somewhere/else", {"metrics": {"pm25": 12.0}}))
    assert res.error is not None and res.error.reason == "unknown_format"
