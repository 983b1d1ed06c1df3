"""Unit tests of the rules the format modules share: vendor keys, times, numbers, topics."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from ingest.formats import FORMATS, TOPICS, airrohr, chirpstack_v4, format_for_topic
from ingest.formats._common import best_rssi, first_per_metric, load_json, parse_time, utc_from_seconds
from ingest.vendor_keys import as_float, lookup, readings_from_object
from lorong.core.errors import ParseError, UnknownFormat
from lorong.core.model import RawReading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_all_formats_registered_with_topics() -> None:
    assert sorted(FORMATS) == ["airrohr", "chirpstack-v4", "lorong-json", "senml", "ttn-v3"]
    assert set(TOPICS) == set(FORMATS)


@pytest.mark.parametrize(("topic", "fmt"), [
    ("lorong/v1/MKS-BIN-0001/up", "lorong-json"),
    ("v3/lorong@ttn/devices/em310-a1/up", "ttn-v3"),
    ("application/17c82e96/device/0101010101010101/event/up", "chirpstack-v4"),
    ("application/17c82e96/device/0101010101010101/event/status", "chirpstack-v4"),
    ("senml/MKS-AIR-07", "senml"),
    ("airrohr/esp8266-3394227", "airrohr"),
])
def test_topic_routing(topic: str, fmt: str) -> None:
    assert format_for_topic(topic) == fmt


@pytest.mark.parametrize("topic", ["application/x/device/y/command/down", "airrohr/a/b", "senml",
                                   "v3/a/devices/b/join"])
def test_unrouted_topics(topic: str) -> None:
    with pytest.raises(UnknownFormat):
        format_for_topic(topic)


@pytest.mark.parametrize(("key", "expected"), [
    ("pm2_5", ("pm25", "ug/m3", -1)),          # the whole key first: not channel 5 of "pm2"
    ("pm1_0", ("pm1", "ug/m3", -1)),
    ("temperature_3", ("temperature", "degC", 3)),
    ("relative_humidity_2", ("relativeHumidity", "%", 2)),
    ("barometric_pressure_4", ("pressure", "hPa", 4)),
    ("luminosity_5", ("illuminance", "lx", 5)),
    ("Bat", ("batteryVoltage", "V", -1)),
    ("fillingLevel", ("fillingLevel", "1", -1)),
    ("batteryVoltage", ("batteryVoltage", "V", -1)),
    ("analog_in_1", None),
    ("light_level", None),
])
def test_vendor_key_lookup(key: str, expected: tuple[str, str, int] | None) -> None:
    assert lookup(key) == expected


def test_lowest_cayenne_channel_wins_and_unsuffixed_beats_suffixed() -> None:
    got = readings_from_object({"temperature_10": 9.0, "temperature_3": 3.4, "temperature_2": 4.2})
    assert got == [RawReading("temperature", 4.2, "degC")]
    got = readings_from_object({"temperature_1": 1.0, "temperature": 20.0})
    assert got == [RawReading("temperature", 20.0, "degC")]


def test_decentlab_value_objects_carry_their_unit() -> None:
    got = readings_from_object({"barometric_pressure": {"displayName": "Barometric pressure", "unit": "Pa",
                                                        "value": 96800},
                                "battery_voltage": {"displayName": "Battery voltage", "unit": "V", "value": 3.109}})
    assert got == [RawReading("pressure", 96800.0, "Pa"), RawReading("batteryVoltage", 3.109, "V")]


def test_vendor_strings_numbers_and_sentinels() -> None:
    got = readings_from_object({"Distance": "2799 mm", "TempC_SHT": "No Sensor", "position": "tilt", "tilt": 0})
    assert got[0] == RawReading("distance", 2799.0, "mm")
    assert got[1].metric == "temperature" and math.isnan(got[1].value)
    assert got[2] == RawReading("tilt", 1.0, "1")  # "position" came first
    assert len(got) == 3


@pytest.mark.parametrize(("raw", "expected"), [
    (1, 1.0), (-2.5, -2.5), ("-59 dBm", -59.0), (" 3.53 ", 3.53), (True, None), (None, None),
    ("No Sensor", None), ([1], None), (10**400, math.inf), (-(10**400), -math.inf),
])
def test_as_float(raw: object, expected: float | None) -> None:
    assert as_float(raw) == expected


def test_strict_json() -> None:
    for bad in (b'{"v": NaN}', b'{"v": Infinity}', b"[" * 100_000, b"1" * 5000, b"\xff", b"{"):
        with pytest.raises(ParseError) as err:
            load_json(bad, "x")
        assert err.value.reason == "bad_json"


@pytest.mark.parametrize(("text", "expected"), [
    ("2022-07-18T09:34:15.775023242+00:00", datetime(2022, 7, 18, 9, 34, 15, 775023, tzinfo=UTC)),
    ("2022-01-19T19:02:34.007345025Z", datetime(2022, 1, 19, 19, 2, 34, 7345, tzinfo=UTC)),
    ("2026-11-29T10:00:00+08:00", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
    ("2024-11-10T12:51:50+00:00", datetime(2024, 11, 10, 12, 51, 50, tzinfo=UTC)),
])
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, "x") == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-11-29T10:00:00", 1700000000, "0001-01-01T00:00:00+01:00"])
def test_parse_time_rejects(text: object) -> None:
    with pytest.raises(ParseError) as err:
        parse_time(text, "x")
    assert err.value.reason == "bad_time"


def test_epoch_out_of_range() -> None:
    for s in (1e300, math.inf, -1e20):
        with pytest.raises(ParseError):
            utc_from_seconds(s, "x")


def test_best_rssi_and_first_per_metric() -> None:
    assert best_rssi([-107, -90, None, "x", True]) == RawReading("rssi", -90.0, "dBm")
    assert best_rssi([]) is None
    a, b = RawReading("temperature", 1.0, "degC"), RawReading("temperature", 2.0, "degC")
    c = RawReading("temperature", 3.0, "degC", T0)
    assert first_per_metric([a, b, c]) == (a, c)


@pytest.mark.parametrize(("chip", "device"), [("3394227", "esp8266-3394227"), (12041741, "esp8266-12041741")])
def test_airrohr_device_id(chip: object, device: str) -> None:
    assert airrohr.device_id(chip) == device


@pytest.mark.parametrize("chip", [None, True, "esp8266-1", "", -5, 1.5, "12 34"])
def test_airrohr_bad_chip_id(chip: object) -> None:
    with pytest.raises(ParseError) as err:
        airrohr.device_id(chip)
    assert err.value.reason == "bad_envelope"


def test_chirpstack_tags_are_sorted_strings() -> None:
    body = {"deviceInfo": {"devEui": "0101010101010101", "tags": {"zone": "Wajo", "bin": "B-17", "n": 3,
                                                                 "x": {"nested": 1}, "flag": True}},
            "fCnt": 3, "object": {"distance": 900}}
    (up,) = chirpstack_v4.parse(json.dumps(body).encode(), "application/a/device/0101010101010101/event/up", T0)
    assert up.tags == (("bin", "B-17"), ("n", "3"), ("zone", "Wajo"))
    assert up.fcnt == 3 and up.frame is None


def test_chirpstack_unknown_event_name() -> None:
    with pytest.raises(ParseError, match="unknown event 'foo'") as err:
        chirpstack_v4.parse(b"{}", "application/a/device/0101010101010101/event/foo", T0)
    assert err.value.reason == "not_an_uplink"


@pytest.mark.parametrize("text", ["No Sensor", "no sensor", " NO SENSOR ", "Invalid Reading"])
def test_known_sentinel_strings_become_nan(text: str) -> None:
    """A vendor's no-value string stays a reading with ``nan``: validation names it ``sensor_sentinel``."""
    got = readings_from_object({"distance": text, "battery": 90})
    assert got[0].metric == "distance" and got[0].unit == "mm" and math.isnan(got[0].value)
    assert got[1] == RawReading("batteryLevel", 90.0, "%")


@pytest.mark.parametrize(("obj", "detail"), [
    ({"distance": "lots"}, "'distance' = 'lots' is not a number"),
    ({"battery": 90, "temperature": "warm"}, "'temperature' = 'warm' is not a number"),
    ({"barometric_pressure": {"unit": "Pa", "value": "high"}}, "'barometric_pressure' = 'high' is not a number"),
    ({"Distance": ""}, "'Distance' = '' is not a number"),
])
def test_other_non_numeric_strings_are_bad_value(obj: dict[str, object], detail: str) -> None:
    with pytest.raises(ParseError) as err:
        readings_from_object(obj)
    assert err.value.reason == "bad_value"
    assert detail in err.value.detail


def test_a_bad_string_under_a_key_that_loses_is_dropped() -> None:
    """Only the winning key per metric counts: a second probe's bad string is dropped like its value."""
    got = readings_from_object({"temperature": 20.5, "temperature_2": "warm", "mystery": "lots"})
    assert got == [RawReading("temperature", 20.5, "degC")]
