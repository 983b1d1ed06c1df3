"""LoRaWAN byte codecs against the vendors' own examples and hand-built frames.

Every vector of ``tests/data/lorawan_vectors.json`` is a test: the vendor decoder's key names are
mapped explicitly (``KEYS``) to a canonical metric and a unit conversion, and the decoded values
are compared numerically. Negative vectors must raise ``CodecError`` with the right reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.errors import CodecError
from core.metrics import METRICS
from core.model import RawReading
from firmware_sim.encoders.milesight import encode_em310_udl
from ingest.codecs import CODECS, decode_hex, get_codec

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

Conv = Callable[[Any], float]


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
}


def _vector_id(v: dict[str, Any]) -> str:
    return str(v["id"])


def _is_error(v: dict[str, Any]) -> bool:
    exp = v["expected"]
    return "errors" in exp or any(x == "No Sensor" for x in exp.values())


@pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)
def test_vendor_vector(vector: dict[str, Any]) -> None:
    codec_id = DEVICE_CODEC[vector["device"]]
    if codec_id not in CODECS:
        pytest.skip(f"{codec_id} not implemented yet")
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
        expected[metric] = conv(raw)
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
