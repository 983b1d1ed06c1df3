"""LoRaWAN byte codecs against the vendors' own examples and hand-built frames.

Every vector of ``tests/data/lorawan_vectors.json`` is a test: the vendor decoder's key names are
mapped explicitly (``KEYS``) to a canonical metric and a unit conversion, and the decoded values
are compared numerically. Negative vectors must raise ``CodecError`` with the right reason.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.encoders.milesight import encode_em310_udl
from ingest.codecs import CODECS, decode_hex, get_codec
from lorong.core.errors import CodecError
from lorong.core.metrics import METRICS
from lorong.core.model import RawReading

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS: list[dict[str, Any]] = json.loads((DATA / "lorawan_vectors.json").read_text())

DEVICE_CODEC = {
    "EM310-UDL": "milesight-em310-udl",
    "EM400-MUD": "milesight-em400-mud",
    "EM400-UDL": "milesight-em400-udl",
    "EM400-TLD": "milesight-em400-tld",
    "EM500-UDL": "milesight-em500-udl",
    "EM500-CO2": "milesight-em500-co2",
    "AM103": "milesight-am103",
    "AM107": "milesight-am107",
    "AM307": "milesight-am307",
    "AM308": "milesight-am308",
    "AM319": "milesight-am319",
    "LDDS75": "dragino-ldds75",
    "LDDS20": "dragino-ldds20",
    "LAQ4": "dragino-laq4",
    "DL-MBX": "decentlab-dl-mbx",
    "DL-PM": "decentlab-dl-pm",
    "DL-LP8P": "decentlab-dl-lp8p",
    "WILSEN.sonic.level": "pepperl-fuchs-wilsen-sonic-level",
    "WILSEN.sonic.distance": "pepperl-fuchs-wilsen-sonic-distance",
}

Conv = Callable[[Any], float | None]
"""Vendor value -> canonical value, or ``None`` when the codec must emit nothing for it."""


def _num(value: Any) -> float:
    """A number, or the number at the start of a vendor string such as ``"2799 mm"``."""
    if isinstance(value, dict):  # Decentlab {"displayName", "unit", "value"}
        value = value["value"]
    if isinstance(value, str):
        m = re.match(r"\s*(-?\d+(?:\.\d+)?)", value)
        assert m, f"no number in {value!r}"
        return float(m.group(1))
    return float(value)


def same(value: Any) -> float:
    return _num(value)


def percent(value: Any) -> float:
    return _num(value) / 100.0


def pascal_to_hpa(value: Any) -> float:
    return _num(value) / 100.0


def tilt_word(value: Any) -> float:
    return {"normal": 0.0, "tilt": 1.0}[value]


def true_word(value: Any) -> float:
    return {"TRUE": 1.0, "FALSE": 0.0}[value]


def ds18b20(value: Any) -> float | None:
    """Dragino probe temperature; "0.00" is what the device sends without the probe: no reading."""
    return None if value == "0.00" else _num(value)


IGNORE = None
"""Vendor keys with no canonical metric (counters, raw sensor internals, echoes of the input)."""

# vendor key -> (canonical metric, conversion from the vendor value) or IGNORE, per vendor family.
KEYS: dict[str, dict[str, tuple[str, Conv] | None]] = {
    "Milesight": {
        "battery": ("batteryLevel", percent),
        "distance": ("distance", same),
        "tilt": ("tilt", tilt_word),  # old TTN decoder name
        "position": ("tilt", tilt_word),  # current vendor decoder name
        "temperature": ("temperature", same),
        "humidity": ("relativeHumidity", percent),
        "co2": ("co2", same),
        "pressure": ("pressure", same),
        "tvoc": ("tvoc", same),
        "hcho": ("hcho", same),
        "pm2.5": ("pm25", same),
        "pm2_5": ("pm25", same),
        "pm10": ("pm10", same),
        "illumination": ("illuminance", same),
        "activity": IGNORE,  # PIR activity count / trigger: no canonical metric
        "light_level": IGNORE,  # 0-5 light class, not lux
        "infrared": IGNORE,
        "infrared_and_visible": IGNORE,
    },
    "Dragino": {
        "Bat": ("batteryVoltage", same),
        "Bat_V": ("batteryVoltage", same),
        "Distance": ("distance", same),  # "2799 mm"
        "TempC_DS18B20": ("temperature", ds18b20),
        "TempC_SHT": ("temperature", same),
        "Hum_SHT": ("relativeHumidity", percent),
        "TVOC_ppb": ("tvoc", same),
        "CO2_ppm": ("co2", same),
        "Alarm_status": ("alarm", true_word),
        "Interrupt_flag": IGNORE,  # wake-up cause, not a measurement
        "Sensor_flag": IGNORE,  # checked by the codec (0 -> sensor_sentinel)
        "Work_mode": IGNORE,
    },
    "Pepperl+Fuchs": {
        "proxx": ("distance", lambda v: _num(v) * 10),  # cm
        "proxx_mm": ("distance", same),
        "fillinglvl": ("fillingLevel", percent),
        "temp": ("temperature", same),
        "battery_vol": ("batteryVoltage", same),
        "amplitude": IGNORE,  # echo amplitude 0-255
        "payload": IGNORE,  # the input hex echoed back
        "latitude": IGNORE,  # position lives in the device registry
        "longitude": IGNORE,
        "serial_nr": IGNORE,
        "lora_count": IGNORE,
        "gps_count": IGNORE,
        "us_sensor_count": IGNORE,
    },
    "Decentlab": {  # values are {"displayName", "unit", "value"}; _num takes "value"
        "distance": ("distance", same),
        "battery_voltage": ("batteryVoltage", same),
        "air_temperature": ("temperature", same),
        "air_humidity": ("relativeHumidity", percent),
        "barometric_pressure": ("pressure", pascal_to_hpa),
        "pm1_0_mass_concentration": ("pm1", same),
        "pm2_5_mass_concentration": ("pm25", same),
        "pm10_mass_concentration": ("pm10", same),
        "co2_concentration": ("co2", same),
        "protocol_version": IGNORE,
        "device_id": IGNORE,
        "number_of_valid_samples": IGNORE,  # checked by the codec (0 -> sensor_sentinel)
        "pm4_mass_concentration": IGNORE,  # no canonical PM4
        "typical_particle_size": IGNORE,
        "pm0_5_number_concentration": IGNORE,  # number concentrations, 1/cm3
        "pm1_0_number_concentration": IGNORE,
        "pm2_5_number_concentration": IGNORE,
        "pm4_number_concentration": IGNORE,
        "pm10_number_concentration": IGNORE,
        "barometer_temperature": IGNORE,  # pressure sensor's die temperature
        "co2_concentration_lpf": IGNORE,  # low-pass filtered duplicate
        "co2_sensor_temperature": IGNORE,
        "capacitor_voltage_1": IGNORE,
        "capacitor_voltage_2": IGNORE,
        "co2_sensor_status": IGNORE,
        "raw_ir_reading": IGNORE,
        "raw_ir_reading_lpf": IGNORE,
    },
}


def _vector_id(v: dict[str, Any]) -> str:
    return str(v["id"])


def _is_error(v: dict[str, Any]) -> bool:
    exp = v["expected"]
    return "errors" in exp or any(x == "No Sensor" for x in exp.values())


@pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)
def test_vendor_vector(vector: dict[str, Any]) -> None:
    codec_id = DEVICE_CODEC[vector["device"]]
    assert codec_id in CODECS, f"no codec registered for {vector['device']}"
    codec = get_codec(codec_id)
    payload = bytes.fromhex(vector["payload_hex"])
    if _is_error(vector):
        reason = "unknown_fport" if "errors" in vector["expected"] else "sensor_sentinel"
        with pytest.raises(CodecError) as err:
            codec(vector["fport"], payload)
        assert err.value.reason == reason
        return
    readings = codec(vector["fport"], payload)
    keys = KEYS[vector["vendor"]]
    expected: dict[str, float] = {}
    for key, raw in vector["expected"].items():
        assert key in keys, f"no mapping for vendor key {key!r}"
        entry = keys[key]
        if entry is None:
            continue
        metric, conv = entry
        value = conv(raw)
        if value is not None:
            expected[metric] = value
    got = {r.metric: r.value for r in readings}
    assert len(got) == len(readings), f"metric repeated in one frame: {readings}"
    assert set(got) == set(expected), (got, expected)
    for metric, value in expected.items():
        assert math.isclose(got[metric], value, rel_tol=1e-9, abs_tol=1e-9), (metric, got[metric], value)
    for r in readings:
        assert r.unit == METRICS[r.metric].unit
        assert r.ts is None


def _em310(hex_payload: str, fport: int = 85) -> dict[str, float]:
    return {r.metric: r.value for r in decode_hex("milesight-em310-udl", fport, hex_payload)}


def test_em310_readme_example_units() -> None:
    """Milesight README example: 01755C 03824408 040001 -> 92 %, 2116 mm, tilt."""
    readings = decode_hex("milesight-em310-udl", 85, "01 75 5C 03 82 44 08 04 00 01")
    assert readings == [
        RawReading("batteryLevel", 0.92, "1"),
        RawReading("distance", 2116.0, "mm"),
        RawReading("tilt", 1.0, "1"),
    ]


def test_em310_attribute_frame_has_no_readings() -> None:
    """Power-on frame: ipso 0x01, hardware 0x0110, firmware 0x0114, tsl, class, sn; no telemetry."""
    frame = "FF0101 FF090110 FF0A0114 FFFF0100 FF0F00 FF166136D19058820011"
    assert decode_hex("milesight-em310-udl", 85, frame) == []


def test_em310_attributes_then_telemetry() -> None:
    assert _em310("FF0BFF 01754B 0382E803 040000") == {"batteryLevel": 0.75, "distance": 1000.0, "tilt": 0.0}


@pytest.mark.parametrize(
    ("hex_payload", "fport", "reason"),
    [
        ("01755C03824408040001", 2, "unknown_fport"),
        ("", 85, "short_frame"),
        ("01", 85, "short_frame"),
        ("01755C038244", 85, "short_frame"),  # distance cut after one byte
        ("01755C03820000", 85, "sensor_sentinel"),  # distance 0: no echo
        ("01755C0382FFFF", 85, "sensor_sentinel"),  # all-ones: no echo
        ("040002", 85, "bad_frame"),  # position code 2 does not exist
        ("FF4400", 85, "bad_frame"),  # unknown attribute record
    ],
)
def test_em310_errors(hex_payload: str, fport: int, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_hex("milesight-em310-udl", fport, hex_payload)
    assert err.value.reason == reason


def test_em310_unknown_channel_stops_like_vendor_decoder() -> None:
    """The vendor decoder breaks at an unknown channel; what came before is kept."""
    assert _em310("01755C 0999AABB 03824408") == {"batteryLevel": 0.92}


@pytest.mark.parametrize(
    ("distance", "battery", "tilt"), [(20, 0, False), (2116, 92, True), (4500, 100, False)]
)
def test_em310_round_trip(distance: int, battery: int, tilt: bool) -> None:
    payload = encode_em310_udl(distance, battery, tilt)
    assert len(payload) == 10
    readings = get_codec("milesight-em310-udl")(85, payload)
    assert {r.metric: r.value for r in readings} == {
        "batteryLevel": battery / 100,
        "distance": float(distance),
        "tilt": 1.0 if tilt else 0.0,
    }


def test_em310_encoder_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_em310_udl(70000, 50)
    with pytest.raises(ValueError):
        encode_em310_udl(100, 101)


def test_decode_hex_rejects_non_hex() -> None:
    with pytest.raises(CodecError) as err:
        decode_hex("milesight-em310-udl", 85, "01 75 ZZ")
    assert err.value.reason == "bad_frame"
    with pytest.raises(CodecError) as err:
        decode_hex("no-such-codec", 85, "0175")
    assert err.value.reason == "unknown_codec"


def test_em310_encoder_matches_vendor_example() -> None:
    assert encode_em310_udl(2116, 92, tilt=True) == bytes.fromhex("01755C03824408040001")


def _values(codec_id: str, hex_payload: str, fport: int = 85) -> dict[str, float]:
    """Decoded live values by metric (asserts no metric repeats and canonical units)."""
    readings = decode_hex(codec_id, fport, hex_payload)
    assert len({r.metric for r in readings}) == len(readings), readings
    for r in readings:
        assert r.unit == METRICS[r.metric].unit, r
    return {r.metric: r.value for r in readings}


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want), (got, want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, got[k], v)


# Milesight-IoT/SensorDecoders <model>-codec.json "bytes" samples, decoded by byte arithmetic.
CATALOGUE_SAMPLES = {
    # 0175 64 | 0367 0401 (0x0104=260 -> 26.0) | 0468 7B (123/2=61.5 %) | 077D AC02 (0x02AC=684)
    "am103": ("milesight-am103", {"batteryLevel": 1.0, "temperature": 26.0, "relativeHumidity": 0.615,
                                  "co2": 684.0}),
    # 0175 64 | 0367 FE00 (254 -> 25.4) | 0468 80 (64 %) | 0A6A: a channel the AM107 decoder does not
    # know, so it stops there like the vendor decoder and the CO2 record after it is not read.
    "am107": ("milesight-am107", {"batteryLevel": 1.0, "temperature": 25.4, "relativeHumidity": 0.64}),
    # 01755C 03673401 046865, then 056A (AM107 activity) which the AM307 decoder does not know: stop.
    "am307": ("milesight-am307", {"batteryLevel": 0.92, "temperature": 30.8, "relativeHumidity": 0.505}),
    # 0367 0A01 (266) | 0468 58 (88/2=44 %) | 0500 01 pir | 06CB 01 | 077D FF02 (767) |
    # 087D E300 (227 = IAQ 2.27) | 0973 FE27 (10238 -> 1023.8) | 0B7D 0700 | 0C7D 0800 | 0175 62 (98 %)
    "am308": ("milesight-am308", {"temperature": 26.6, "relativeHumidity": 0.44, "co2": 767.0,
                                  "tvoc": 227.0, "pressure": 1023.8, "pm25": 7.0, "pm10": 8.0,
                                  "batteryLevel": 0.98}),
    "am319-hcho": ("milesight-am319", {"temperature": 26.6, "relativeHumidity": 0.44, "co2": 767.0,
                                       "tvoc": 227.0, "pressure": 1023.8, "pm25": 7.0, "pm10": 8.0,
                                       "batteryLevel": 0.98}),
    "em310-udl": ("milesight-em310-udl", {"batteryLevel": 0.92, "distance": 2116.0, "tilt": 1.0}),
    "em400-mud": ("milesight-em400-mud", {"batteryLevel": 0.92, "temperature": 25.7, "distance": 2116.0,
                                          "tilt": 1.0}),
    "em400-udl": ("milesight-em400-udl", {"batteryLevel": 0.92, "temperature": 25.7, "distance": 2116.0,
                                          "tilt": 1.0}),
    # 0175 64 | 0367 1901 (281) | 0468 73 (115/2) | 057D 6704 (1127) | 0673 6827 (10088)
    "em500-co2": ("milesight-em500-co2", {"batteryLevel": 1.0, "temperature": 28.1,
                                          "relativeHumidity": 0.575, "co2": 1127.0, "pressure": 1008.8}),
    "em500-udl": ("milesight-em500-udl", {"batteryLevel": 1.0, "distance": 30.0}),
}


@pytest.mark.parametrize("model", sorted(CATALOGUE_SAMPLES))
def test_milesight_catalogue_sample(model: str) -> None:
    codec_id, want = CATALOGUE_SAMPLES[model]
    sample = json.loads((DATA / "milesight-sensordecoders" / f"{model}-codec.json").read_text())["bytes"]
    _close(_values(codec_id, sample), want)


TB_MILESIGHT = sorted(
    (DATA / "thingsboard-data-converters" / "VENDORS" / "Milesight").glob("*/ChirpStack/uplink/payload*.json")
)
TB_CODEC = {
    "AM319": "milesight-am319", "EM310-UDL": "milesight-em310-udl", "EM400-UDL": "milesight-em400-udl",
    "EM500-CO2": "milesight-em500-co2", "EM500-UDL": "milesight-em500-udl",
}
TB_EXTRA_KEYS = {"pir", "beep", "trigger", "light_level"}  # no canonical metric


@pytest.mark.parametrize("path", TB_MILESIGHT, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_milesight_thingsboard_uplinks(path: Path) -> None:
    """ThingsBoard's converter output for ChirpStack uplinks is a second opinion on live values."""
    msg = json.loads(path.read_text())
    result = json.loads(path.with_name(path.name.replace("payload", "result")).read_text())
    readings = get_codec(TB_CODEC[path.parts[-4]])(msg["fPort"], base64.b64decode(msg["data"]))
    live = {r.metric: r.value for r in readings if r.ts is None}
    keys = KEYS["Milesight"]
    want = {}
    for key, raw in result["telemetry"][0]["values"].items():
        if key in TB_EXTRA_KEYS:
            continue
        entry = keys[key]
        assert entry is not None
        want[entry[0]] = entry[1](raw)
    _close(live, want)


def test_am319_history_record_decoded_faithfully() -> None:
    """thingsboard-data-converters AM319 payload_1: a ``20 CE`` record with impossible values.

    Bytes after 20 CE: 6535CA0C | 00E1 | 006E | 01 | 64 | 01C2 | 000A | 2797 | 0019 | 0032 | 0400.
    Time 0x0CCA3565 = 214578533 s = 1976-10-19 13:08:53 UTC (ThingsBoard: 214578533000 ms). The
    temperature bytes 00 E1 are int16 LE 0xE100 = -7936 -> -793.6 degC (the vendor decoder reads it
    signed; ThingsBoard's converter read 5760.0 unsigned). Validation, not the codec, rejects these.
    """
    path = DATA / "thingsboard-data-converters/VENDORS/Milesight/AM319/ChirpStack/uplink/payload_1.json"
    msg = json.loads(path.read_text())
    readings = get_codec("milesight-am319")(85, base64.b64decode(msg["data"]))
    history = [r for r in readings if r.ts is not None]
    assert {r.ts for r in history} == {datetime(1976, 10, 19, 13, 8, 53, tzinfo=UTC)}
    assert int(history[0].ts.timestamp() * 1000) == 214578533000  # type: ignore[union-attr]
    _close({r.metric: r.value for r in history}, {
        "temperature": -793.6,  # 0xE100 signed
        "relativeHumidity": 0x6E00 / 200,  # 28160 half-percent steps = 14080 %
        "co2": 0xC201,  # 49665
        "tvoc": 0x0A00,  # 2560
        "pressure": 0x9727 / 10,  # 3869.5
        "pm25": 0x1900,
        "pm10": 0x3200,
        "hcho": 0.04,
    })


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "want"),
    [
        # 0xFF9C = -100 -> -10.0 degC (EM400 temperature channel 03 67)
        ("milesight-em400-udl", "03679CFF", {"temperature": -10.0}),
        # 0xFF38 = -200 -> -20.0 degC; 0x8001 would be -3276.7: sign bit honoured
        ("milesight-em500-co2", "036738FF", {"temperature": -20.0}),
        ("milesight-am103", "03670180", {"temperature": -3276.7}),
        # 0xFFFF = -1 -> -0.1 degC, not 6553.5
        ("milesight-am319", "0367FFFF", {"temperature": -0.1}),
    ],
)
def test_milesight_negative_temperature(codec_id: str, hex_payload: str, want: dict[str, float]) -> None:
    _close(_values(codec_id, hex_payload), want)


def test_em500_udl_history_records_carry_utc_time() -> None:
    """Two 20 CE records: 1700000000 = 0x6553F100 (LE 00F15365) -> 2023-11-14 22:13:20 UTC, 1234 mm;
    1700000600 = 0x6553F358 (LE 58F35365), 0 mm (no echo: dropped, batch kept)."""
    readings = decode_hex("milesight-em500-udl", 85, "017564 03822C01 20CE00F15365D204 20CE58F3536500 00")
    assert readings == [
        RawReading("batteryLevel", 1.0, "1"),
        RawReading("distance", 300.0, "mm"),
        RawReading("distance", 1234.0, "mm", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ]


def test_am103_and_em500_co2_history() -> None:
    ts = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # 00F15365
    # AM103: temperature 0xFF38 (-20.0), humidity 0x64 (50 %), co2 0x01F4 (500)
    got = decode_hex("milesight-am103", 85, "20CE 00F15365 38FF 64 F401")
    assert got == [RawReading("temperature", -20.0, "degC", ts), RawReading("relativeHumidity", 0.5, "1", ts),
                   RawReading("co2", 500.0, "ppm", ts)]
    # EM500-CO2: co2 0x0467 (1127), pressure 0x2768 (1008.8), temperature 0x00FA (25.0), humidity 0x73
    got = decode_hex("milesight-em500-co2", 85, "20CE 00F15365 6704 6827 FA00 73")
    assert {r.metric: r.value for r in got} == {"co2": 1127.0, "pressure": 1008.8, "temperature": 25.0,
                                                 "relativeHumidity": 0.575}
    assert {r.ts for r in got} == {ts}


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "want"),
    [
        # EM400 temperature alarm (83 67: 0x00F6 = 24.6, alarm 1) + distance alarm release (84 82)
        ("milesight-em400-mud", "8367F60001 8482E80300",
         {"temperature": 24.6, "distance": 1000.0, "alarm": 1.0}),
        ("milesight-em400-tld", "8482E80300", {"distance": 1000.0, "alarm": 0.0}),
        # EM500-UDL 83 E9: distance 0x3039/10 = 1234.5, mutation 0x0064 (consumed), 2 = mutation alarm
        ("milesight-em500-udl", "83E939306400 02", {"distance": 1234.5, "alarm": 1.0}),
        # EM500-CO2 83 D7: 0x0190 = 40.0 degC, mutation 0x0032, 1 = threshold alarm
        ("milesight-em500-co2", "83D79001320001", {"temperature": 40.0, "alarm": 1.0}),
        ("milesight-em500-co2", "83D79001320000", {"temperature": 40.0, "alarm": 0.0}),
    ],
)
def test_milesight_alarm_records(codec_id: str, hex_payload: str, want: dict[str, float]) -> None:
    _close(_values(codec_id, hex_payload), want)


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "want"),
    [
        # EM500-CO2 CO2 calibration ack in manual mode (FF 1A 02 + uint16) then CO2
        ("milesight-em500-co2", "FF1A029001 057D6704", {"co2": 1127.0}),
        ("milesight-em500-co2", "FF1A01 057D6704", {"co2": 1127.0}),
        # AM103 report schedule ack: 1 entry of 6 bytes, then CO2
        ("milesight-am103", "FF3A01 0A1E2C01050A 077DE704", {"co2": 1255.0}),
        # AM107 6-byte serial number (FF 08), then battery
        ("milesight-am107", "FF08 6136D1905882 017550", {"batteryLevel": 0.8}),
        # EM400-TLD tilt-calibration ack (FF A5) has no data
        ("milesight-em400-tld", "FFA5 017550", {"batteryLevel": 0.8}),
        # AM308 TVOC in ug/m3 (08 E6) is consumed, not emitted; buzzer likewise
        ("milesight-am308", "08E6F401 0E0101 0B7D2300", {"pm25": 35.0}),
    ],
)
def test_milesight_attribute_and_unemitted_records(codec_id: str, hex_payload: str,
                                                   want: dict[str, float]) -> None:
    _close(_values(codec_id, hex_payload), want)


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "reason"),
    [
        ("milesight-em400-udl", "04820000", "sensor_sentinel"),
        ("milesight-em400-udl", "8482FFFF01", "sensor_sentinel"),
        ("milesight-em500-udl", "03820000", "sensor_sentinel"),
        ("milesight-em400-udl", "050003", "bad_frame"),
        ("milesight-em400-udl", "8367F60007", "bad_frame"),
        ("milesight-am319", "20CE00F15365", "short_frame"),
        ("milesight-am103", "FF3A02 0A1E2C01050A", "short_frame"),
        ("milesight-am307", "0175", "short_frame"),
        ("milesight-am307", "077DE704", "ok"),
    ],
)
def test_milesight_errors(codec_id: str, hex_payload: str, reason: str) -> None:
    if reason == "ok":
        assert decode_hex(codec_id, 85, hex_payload)
        return
    with pytest.raises(CodecError) as err:
        decode_hex(codec_id, 85, hex_payload)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "want"),
    [
        # BAT 0x0D3B & 0x3FFF = 3387 mV; DIST 0x0AEF = 2799 mm; TEMP 0xFF9C = -100 -> -10.0 degC
        ("dragino-ldds75", "0D3B0AEF00FF9C01", {"batteryVoltage": 3.387, "distance": 2799.0,
                                                "temperature": -10.0}),
        # top two BAT bits are not battery: 0xCD3B & 0x3FFF = 3387
        ("dragino-ldds45", "CD3B0AEF0000FA01", {"batteryVoltage": 3.387, "distance": 2799.0,
                                                "temperature": 25.0}),
        # older 5-byte firmware frame: BAT, DIST 0x0190 = 400 mm, INT
        ("dragino-ldds20", "0E1C019000", {"batteryVoltage": 3.612, "distance": 400.0}),
        # LAQ4: TEMP 0xFF38 = -200 -> -20.0 degC, HUM 0x0320 = 800 -> 80.0 %, alarm bit clear
        ("dragino-laq4", "0D0704001202 0BFF38 0320", {"batteryVoltage": 3.335, "alarm": 0.0, "tvoc": 18.0,
                                                      "co2": 523.0, "temperature": -20.0,
                                                      "relativeHumidity": 0.8}),
        # LAQ4 work mode 31 (0x7C): alarm thresholds, only the battery is a reading
        ("dragino-laq4", "0D077C1E2814500190 07D0", {"batteryVoltage": 3.335}),
    ],
)
def test_dragino_frames(codec_id: str, hex_payload: str, want: dict[str, float]) -> None:
    _close(_values(codec_id, hex_payload, fport=2), want)


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "fport", "reason"),
    [
        ("dragino-ldds75", "0D3B000000000001", 2, "sensor_sentinel"),  # distance 0: no probe
        ("dragino-ldds75", "0D3B001400000001", 2, "sensor_sentinel"),  # 20 mm: invalid reading
        ("dragino-ldds75", "0D3B0AEF00000000", 2, "sensor_sentinel"),  # sensor flag 0
        ("dragino-ldds75", "0D3B0AEF00000001", 5, "unknown_fport"),
        ("dragino-ldds75", "0D3B0A", 2, "short_frame"),
        ("dragino-ldds75", "0D3B0AEF0000", 2, "bad_frame"),
        ("dragino-laq4", "0D0705001202", 2, "short_frame"),
        ("dragino-laq4", "0D0705001202 0B00FB01B300", 2, "bad_frame"),
        ("dragino-laq4", "0D0708001202 0B00FB01B3", 2, "bad_frame"),  # work mode 2
    ],
)
def test_dragino_errors(codec_id: str, hex_payload: str, fport: int, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_hex(codec_id, fport, hex_payload)
    assert err.value.reason == reason


TB_DECENTLAB = sorted(
    (DATA / "thingsboard-data-converters" / "VENDORS" / "Decentlab").glob("*/ChirpStack/uplink/payload*.json")
)
TB_NETWORK_KEYS = {"lora_frame_counter", "lora_frame_port", "lora_frequency", "lora_spreading_factor",
                   "lora_rssi", "lora_snr"}


@pytest.mark.parametrize("path", TB_DECENTLAB, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_decentlab_thingsboard_uplinks(path: Path) -> None:
    """ThingsBoard's Decentlab converter output (FPort 1 and 5) as a second opinion."""
    msg = json.loads(path.read_text())
    readings = get_codec(f"decentlab-{path.parts[-4].lower()}")(msg["fPort"], base64.b64decode(msg["data"]))
    result_path = path.with_name(path.name.replace("payload", "result"))
    values = json.loads(result_path.read_text())["telemetry"][0]["values"]
    keys = KEYS["Decentlab"]
    want = {}
    for key, raw in values.items():
        if key in TB_NETWORK_KEYS:
            continue
        entry = keys[key]
        if entry is not None:
            want[entry[0]] = entry[1](raw)
    _close({r.metric: r.value for r in readings}, want)


def _iam_expected(words: list[int]) -> dict[str, float]:
    """DL-IAM values by the vendor's formulas (decoders/DL-IAM/DL-IAM.py) for a full frame."""
    bat, t, h, p, ch0, ch1, co2, _status, _ir, _act, voc = words
    return {
        "batteryVoltage": bat / 1000,
        "temperature": 175 * t / 65535 - 45,
        "relativeHumidity": 100 * h / 65535 / 100,
        "pressure": p * 2 / 100,
        "illuminance": max(max(1.0 * ch0 - 1.64 * ch1, 0.59 * ch0 - 0.86 * ch1), 0) * 1.5504,
        "co2": co2 - 32768,
        "tvoc": voc,
    }


def test_decentlab_dl_iam_vendor_examples() -> None:
    """The three sample payloads of decentlab-decoders decoders/DL-IAM/DL-IAM.py."""
    full = [0x0B92, 0x6A51, 0x5D48, 0xBC4E, 0x0262, 0x0069, 0x81C7, 0x0000, 0x93D4, 0x000B, 0x0111]
    want = _iam_expected(full)
    assert want["co2"] == 455 and want["tvoc"] == 273 and want["batteryVoltage"] == 2.962
    _close(_values("decentlab-dl-iam", "020bbd007f0b926a515d48bc4e0262006981c7000093d4000b0111", 1), want)
    # flags 0x006F: groups 0,1,2,3,5,6 (no CO2 group)
    no_co2 = {k: v for k, v in want.items() if k != "co2"}
    _close(_values("decentlab-dl-iam", "020bbd006f0b926a515d48bc4e02620069000b0111", 1), no_co2)
    _close(_values("decentlab-dl-iam", "020bbd00010b92", 1), {"batteryVoltage": 2.962})


def test_decentlab_dl_mbx_second_sample() -> None:
    """decentlab-decoders DL-MBX/DL-MBX.py second sample: battery group only (flags 0x0002)."""
    _close(_values("decentlab-dl-mbx", "02012f00020bb1", 1), {"batteryVoltage": 2.993})


@pytest.mark.parametrize(
    ("codec_id", "hex_payload", "fport", "reason"),
    [
        ("decentlab-dl-mbx", "02012F0003 04D2 0000 0BB1", 1, "sensor_sentinel"),  # 0 valid samples
        ("decentlab-dl-mbx", "02012F0003 1388 0005 0BB1", 1, "sensor_sentinel"),  # 5000 mm: no target
        ("decentlab-dl-mbx", "02012F0003 0000 0005 0BB1", 1, "sensor_sentinel"),
        ("decentlab-dl-mbx", "02012F000304D200010BB1", 0, "unknown_fport"),
        ("decentlab-dl-mbx", "02012F000304D200010BB1", 224, "unknown_fport"),
        ("decentlab-dl-mbx", "02012F00", 1, "short_frame"),
        ("decentlab-dl-mbx", "02012F000304D20001", 1, "short_frame"),  # battery group missing
        ("decentlab-dl-mbx", "03012F00020BB1", 1, "bad_frame"),  # protocol version 3
        ("decentlab-dl-mbx", "02012F00040BB1", 1, "bad_frame"),  # flag for a third group
        ("decentlab-dl-mbx", "02012F00020BB10000", 1, "bad_frame"),  # trailing bytes
        ("decentlab-dl-pm", "021B5000010C25", 0, "unknown_fport"),
    ],
)
def test_decentlab_errors(codec_id: str, hex_payload: str, fport: int, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_hex(codec_id, fport, hex_payload)
    assert err.value.reason == reason


def test_decentlab_sht21_below_zero() -> None:
    """DL-PM temperature word 0x3000: 175.72 * 12288 / 65536 - 46.85 = 32.9475 - 46.85 = -13.9025 degC."""
    got = _values("decentlab-dl-pm", "021B500004 3000 618D", 1)
    assert math.isclose(got["temperature"], 175.72 * 0x3000 / 65536 - 46.85)
    assert math.isclose(got["temperature"], -13.9025)


# TheThingsNetwork/lorawan-devices vendor/pepperl-fuchs/wilsen-sonic-level-codec.yaml
# @62c8acdd7f0f1e43b65a86f6c158d83b3d0cd200, examples 2-4 (example 1 is in lorawan_vectors.json).
WILSEN_LEVEL_EXAMPLES = [
    ("040B0206B6030B063C06020141B5999A03510124",
     {"distance": 1718.0, "fillingLevel": 0.60, "temperature": 22.7, "batteryVoltage": 3.6}),
    # proximity in cm: 0x0021 = 33 cm = 330 mm; 0x41C8947D = 25.0725 -> 25.1; fill 0x64 = 100 %
    ("040B010021030B066406020141C8947D0351012606500102F4006F0650020081336D",
     {"distance": 330.0, "fillingLevel": 1.0, "temperature": 25.1, "batteryVoltage": 3.8}),
    ("040B0206B6030B063C06020141B5999A0351012406500102F4006F0650020081336D",
     {"distance": 1718.0, "fillingLevel": 0.60, "temperature": 22.7, "batteryVoltage": 3.6}),
]


@pytest.mark.parametrize(("hex_payload", "want"), WILSEN_LEVEL_EXAMPLES)
def test_wilsen_level_yaml_examples(hex_payload: str, want: dict[str, float]) -> None:
    _close(_values("pepperl-fuchs-wilsen-sonic-level", hex_payload, 1), want)


def test_wilsen_negative_temperature_and_unknown_records() -> None:
    """float32 0xC1200000 = -10.0 degC; an unknown record type (0x7777) is skipped by its length."""
    got = _values("pepperl-fuchs-wilsen-sonic-distance", "06 0201 C1200000 05 7777 AABBCC 04 0B02 01F4", 1)
    _close(got, {"temperature": -10.0, "distance": 500.0})


@pytest.mark.parametrize(
    ("hex_payload", "fport", "reason"),
    [
        ("040B020000", 1, "sensor_sentinel"),
        ("040B01FFFF", 1, "sensor_sentinel"),
        ("040B0206B9", 0, "unknown_fport"),
        ("", 1, "short_frame"),
        ("060201C120", 1, "short_frame"),
        ("0102", 1, "bad_frame"),
        ("050B0206B900", 1, "bad_frame"),  # proximity with a 3-byte value
    ],
)
def test_wilsen_errors(hex_payload: str, fport: int, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_hex("pepperl-fuchs-wilsen-sonic-distance", fport, hex_payload)
    assert err.value.reason == reason


# TheThingsNetwork/lorawan-devices vendor/elsys/*-codec.yaml examples (decoder vendor/elsys/elsys.js):
# ers-co2 @51dc053e, ers-voc @62c8acdd, ers-sound @6a51637e, ers-lite @53a91268, ers-co2-lite @51dc053e,
# ers-eye @6a51637e. elsys.js keys -> canonical: temperature, humidity (%), light (lux), co2, vdd (mV);
# motion, soundPeak/soundAvg and occupancy have no canonical metric.
ELSYS_EXAMPLES = [
    ("elsys-ers-co2", "0100E20229040027050606 0308",
     {"temperature": 22.6, "relativeHumidity": 0.41, "illuminance": 39.0, "co2": 776.0}),
    ("elsys-ers-voc", "0100E202290400270506", {"temperature": 22.6, "relativeHumidity": 0.41, "illuminance": 39.0}),
    ("elsys-ers-sound", "0100E202290400270506150101",
     {"temperature": 22.6, "relativeHumidity": 0.41, "illuminance": 39.0}),
    ("elsys-ers-lite", "0100E20229", {"temperature": 22.6, "relativeHumidity": 0.41}),
    ("elsys-ers-co2-lite", "0100E2022906 0308", {"temperature": 22.6, "relativeHumidity": 0.41, "co2": 776.0}),
    ("elsys-ers-eye", "0100E2022904002705061101", {"temperature": 22.6, "relativeHumidity": 0.41,
                                                   "illuminance": 39.0}),
    # hand-built: 0xFF9C = -10.0 degC, VDD 0x0E10 = 3600 mV, TVOC 0x00C8 = 200 ppb,
    # pressure 0x000F6180 = 1008000 / 1000 = 1008.0 hPa
    ("elsys-ers", "01FF9C 070E10 1C00C8 14000F6180", {"temperature": -10.0, "batteryVoltage": 3.6,
                                                      "tvoc": 200.0, "pressure": 1008.0}),
    # unknown type 0x7F ends decoding as in elsys.js; the record before it is kept
    ("elsys-ers", "0100E2 7F0102 0229", {"temperature": 22.6}),
]


@pytest.mark.parametrize(("codec_id", "hex_payload", "want"), ELSYS_EXAMPLES)
def test_elsys_examples(codec_id: str, hex_payload: str, want: dict[str, float]) -> None:
    _close(_values(codec_id, hex_payload, 5), want)


@pytest.mark.parametrize(
    ("hex_payload", "fport", "reason"),
    [
        ("0E0000", 1, "sensor_sentinel"),
        ("0100E2", 0, "unknown_fport"),
        ("", 5, "short_frame"),
        ("0100", 5, "short_frame"),
        ("0100E20E23", 5, "short_frame"),
    ],
)
def test_elsys_errors(hex_payload: str, fport: int, reason: str) -> None:
    with pytest.raises(CodecError) as err:
        decode_hex("elsys-ers", fport, hex_payload)
    assert err.value.reason == reason


REASONS = {"unknown_fport", "short_frame", "bad_frame", "sensor_sentinel"}


def test_registry_ids_and_modules() -> None:
    """Ids are ``<vendor>-<model>`` lower case; every module documents its source."""
    import ingest.codecs as codecs_pkg

    assert len(CODECS) == sum(len(m.CODEC_IDS) for m in codecs_pkg._MODULES)  # no id registered twice
    for cid in CODECS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", cid), cid
    for module in codecs_pkg._MODULES:
        assert module.__doc__ and ("Follows" in module.__doc__ or "decoder" in module.__doc__), module


@settings(max_examples=400, database=None, deadline=None)
@given(
    codec_id=st.sampled_from(sorted(CODECS)),
    fport=st.one_of(st.sampled_from([1, 2, 5, 85]), st.integers(0, 255)),
    payload=st.binary(max_size=48),
)
def test_codecs_raise_only_codec_error(codec_id: str, fport: int, payload: bytes) -> None:
    """Any bytes: a list of canonical readings, or CodecError with one of the four reasons."""
    try:
        readings = CODECS[codec_id](fport, payload)
    except CodecError as exc:
        assert exc.reason in REASONS
        return
    for r in readings:
        assert isinstance(r.value, float)
        assert r.unit == METRICS[r.metric].unit
        assert r.ts is None or r.ts.utcoffset() is not None


@settings(max_examples=200, database=None, deadline=None)
@given(distance=st.integers(1, 0xFFFE), battery=st.integers(0, 100), tilt=st.booleans())
def test_em310_round_trip_property(distance: int, battery: int, tilt: bool) -> None:
    """Every encodable EM310-UDL frame decodes back to the values put in."""
    readings = get_codec("milesight-em310-udl")(85, encode_em310_udl(distance, battery, tilt))
    assert readings == [
        RawReading("batteryLevel", battery / 100, "1"),
        RawReading("distance", float(distance), "mm"),
        RawReading("tilt", 1.0 if tilt else 0.0, "1"),
    ]
