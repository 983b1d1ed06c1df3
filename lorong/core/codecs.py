"""The catalogue of LoRaWAN codec ids: every id a device may name in its ``codec`` field.

A codec id is ``<vendor>-<model>`` in lower case (``milesight-em310-udl``). The decoders themselves
live in :mod:`ingest.codecs` (one module per device family, each listing its ``CODEC_IDS``); the
device registry checks a device's ``codec`` against this catalogue, which sits below both, so
registering a device needs no decoder. A test keeps the two equal (``tests/core/test_codec_catalogue.py``):
a new decoder adds its ids here too.

The model names are the vendors' own (datasheets and the decoder repositories named in each
decoder module's docstring).
"""

from __future__ import annotations

CODEC_MODELS: dict[str, str] = {
    "decentlab-dl-iam": "Decentlab DL-IAM indoor ambiance monitor",
    "decentlab-dl-lp8p": "Decentlab DL-LP8P CO2, temperature, humidity and pressure sensor",
    "decentlab-dl-mbx": "Decentlab DL-MBX ultrasonic distance / level sensor",
    "decentlab-dl-pm": "Decentlab DL-PM particulate matter sensor",
    "dragino-laq4": "Dragino LAQ4 indoor air-quality sensor",
    "dragino-ldds20": "Dragino LDDS20 through-tank liquid level sensor",
    "dragino-ldds45": "Dragino LDDS45 ultrasonic distance sensor",
    "dragino-ldds75": "Dragino LDDS75 ultrasonic distance sensor",
    "elsys-ers": "Elsys ERS room sensor",
    "elsys-ers-co2": "Elsys ERS CO2 room sensor",
    "elsys-ers-co2-lite": "Elsys ERS CO2 Lite room sensor",
    "elsys-ers-eye": "Elsys ERS Eye room sensor",
    "elsys-ers-lite": "Elsys ERS Lite room sensor",
    "elsys-ers-sound": "Elsys ERS Sound room sensor",
    "elsys-ers-voc": "Elsys ERS VOC room sensor",
    "milesight-am103": "Milesight AM103 indoor temperature, humidity and CO2 sensor",
    "milesight-am107": "Milesight AM107 indoor ambience sensor",
    "milesight-am307": "Milesight AM307 indoor ambience sensor with screen",
    "milesight-am308": "Milesight AM308 indoor ambience sensor with PM2.5/PM10",
    "milesight-am319": "Milesight AM319 (HCHO variant) indoor air-quality sensor",
    "milesight-em310-udl": "Milesight EM310-UDL ultrasonic distance / level sensor",
    "milesight-em400-mud": "Milesight EM400-MUD multi-function bin sensor",
    "milesight-em400-tld": "Milesight EM400-TLD ToF laser distance sensor",
    "milesight-em400-udl": "Milesight EM400-UDL ultrasonic distance sensor",
    "milesight-em500-co2": "Milesight EM500-CO2 outdoor CO2, temperature, humidity and pressure sensor",
    "milesight-em500-udl": "Milesight EM500-UDL ultrasonic distance sensor",
    "pepperl-fuchs-wilsen-sonic-distance": "Pepperl+Fuchs WILSEN.sonic.distance ultrasonic sensor",
    "pepperl-fuchs-wilsen-sonic-level": "Pepperl+Fuchs WILSEN.sonic.level ultrasonic sensor",
}
"""Codec id -> the device model it decodes (vendor and model name)."""


def check_codec_id(codec_id: str) -> str:
    """``codec_id`` itself when the catalogue has it.

    Raises:
        ValueError: the id is not in :data:`CODEC_MODELS`; the message lists the known ids.
    """
    if codec_id not in CODEC_MODELS:
        raise ValueError(f"unknown codec {codec_id!r}; known: {', '.join(sorted(CODEC_MODELS))}")
    return codec_id
