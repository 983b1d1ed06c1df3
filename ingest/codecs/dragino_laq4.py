"""Dragino LAQ4 indoor air-quality sensor (TVOC, CO2, temperature, humidity), FPort 2.

Follows TheThingsNetwork/lorawan-devices ``vendor/dragino/laq4.js``. 11-byte big-endian frame:
BAT uint16 mV | MODE byte (bits 6..2 work mode, bit 0 alarm) | then, in work mode 1 (CO2):
TVOC uint16 ppb | CO2 uint16 ppm | temperature int16 / 10 degC | humidity uint16 / 10 %RH.
Work mode 31 reports the alarm thresholds instead (only the battery is kept). Example
(``vendor/dragino/laq4-codec.yaml``): ``0D07 05 0012 020B 00FB 01B3`` -> 3.335 V, alarm,
18 ppb, 523 ppm, 25.1 degC, 43.5 %RH.
"""

from __future__ import annotations

import struct

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

CODEC_IDS = ("dragino-laq4",)

FPORT = 2
"""Dragino sends sensor data on FPort 2."""

FRAME_LEN = 11
"""The vendor decoder returns data only for 11-byte frames."""

MODE_CO2 = 1
MODE_ALARM_CONFIG = 31


def decode(fport: int, payload: bytes) -> list[RawReading]:
    """Decode an LAQ4 uplink.

    Args:
        fport: LoRaWAN FPort (2).
        payload: 11 FRMPayload bytes.

    Returns:
        Mode 1: ``batteryVoltage`` (V), ``alarm`` (0.0/1.0), ``tvoc`` (ppb), ``co2`` (ppm),
        ``temperature`` (degC), ``relativeHumidity`` (0..1). Mode 31: ``batteryVoltage`` only.

    Raises:
        CodecError: ``unknown_fport`` (not 2), ``short_frame`` (< 11 bytes), ``bad_frame``
            (> 11 bytes or an unknown work mode).
    """
    if fport != FPORT:
        raise CodecError("unknown_fport", f"Dragino LAQ4 uses FPort {FPORT}, got {fport}")
    if len(payload) < FRAME_LEN:
        raise CodecError("short_frame", f"LAQ4 frame of {len(payload)} bytes, expected {FRAME_LEN}")
    if len(payload) > FRAME_LEN:
        raise CodecError("bad_frame", f"LAQ4 frame of {len(payload)} bytes, expected {FRAME_LEN}")
    bat_mv, mode_byte, tvoc, co2, temp, hum = struct.unpack(">HBHHhH", payload)
    mode = (mode_byte & 0x7C) >> 2
    battery = RawReading("batteryVoltage", bat_mv / 1000.0, "V")
    if mode == MODE_ALARM_CONFIG:
        return [battery]
    if mode != MODE_CO2:
        raise CodecError("bad_frame", f"LAQ4 work mode {mode} is not 1 (CO2) or 31 (alarm config)")
    return [
        battery,
        RawReading("alarm", float(mode_byte & 0x01), "1"),
        RawReading("tvoc", float(tvoc), "ppb"),
        RawReading("co2", float(co2), "ppm"),
        RawReading("temperature", temp / 10.0, "degC"),
        RawReading("relativeHumidity", hum / 1000.0, "1"),
    ]
