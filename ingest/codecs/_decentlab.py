"""Shared engine for Decentlab's protocol version 2 uplinks (DL-MBX, DL-PM, DL-LP8P, DL-IAM ...).

Frame, all big-endian (decentlab/decentlab-decoders, every ``decoders/<model>/<model>.py``):

=====  ======================================================================================
size   meaning
=====  ======================================================================================
1      protocol version, always 2
2      device id
2      sensor-group flags: bit *i* set means group *i* of the model's table follows
2 * n  uint16 words of the flagged groups, in table order (group *i* has a fixed word count)
=====  ======================================================================================

A group that is not flagged is absent (fields missing, not zero). Each model module gives its
group table and the conversion of each word into a canonical metric; words with no canonical
metric (sample counts, raw IR readings, sensor status) are consumed and not emitted.

The vendor decoders ignore the FPort; devices send on FPort 1 (ThingsBoard's sample uplinks also
use 5), so any application FPort 1..223 is accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lorong.core.errors import CodecError
from lorong.core.model import RawReading

PROTOCOL_VERSION = 2
"""The only Decentlab frame version these codecs read."""

HEADER_LEN = 5
"""Version (1) + device id (2) + flags (2)."""

Words = Sequence[int]


@dataclass(frozen=True, slots=True)
class Value:
    """One canonical value computed from a group's words.

    Attributes:
        metric: canonical metric name.
        unit: canonical unit.
        convert: the group's uint16 words -> value in ``unit``.
    """

    metric: str
    unit: str
    convert: Callable[[Words], float]


@dataclass(frozen=True, slots=True)
class Group:
    """One sensor group of a model's table.

    Attributes:
        length: number of uint16 words.
        values: canonical values computed from those words.
        sentinel: words -> a reason string when the sensor reported "no reading", else ``None``.
    """

    length: int
    values: tuple[Value, ...]
    sentinel: Callable[[Words], str | None] | None = None


def battery_group() -> Group:
    """The one-word battery group every model has: mV -> ``batteryVoltage`` in V."""
    return Group(1, (Value("batteryVoltage", "V", lambda x: x[0] / 1000),))


def pressure_hpa(word: int) -> float:
    """Barometric pressure word (2 Pa steps, vendor: ``x * 2`` Pa) in hPa."""
    return word * 2 / 100


def decode(name: str, table: Sequence[Group], fport: int, payload: bytes) -> list[RawReading]:
    """Decode one Decentlab v2 uplink with the model's group ``table``.

    Args:
        name: model name for error messages (``DL-PM``).
        table: the model's sensor groups in flag-bit order.
        fport: LoRaWAN FPort, 1..223.
        payload: FRMPayload bytes.

    Returns:
        The canonical values of the flagged groups, in table order, ``ts=None``.

    Raises:
        CodecError: ``unknown_fport`` (0 or > 223), ``short_frame`` (header or a flagged group
            cut short), ``bad_frame`` (version not 2, a flag for a group the model does not have,
            bytes left over), ``sensor_sentinel`` (a group reported no reading).
    """
    if not 1 <= fport <= 223:
        raise CodecError("unknown_fport", f"{name}: FPort {fport} is not an application port")
    if len(payload) < HEADER_LEN:
        raise CodecError("short_frame", f"{name}: {len(payload)} bytes, header needs {HEADER_LEN}")
    version, _device_id, flags = struct.unpack_from(">BHH", payload, 0)
    if version != PROTOCOL_VERSION:
        raise CodecError("bad_frame", f"{name}: protocol version {version}, expected {PROTOCOL_VERSION}")
    if flags >> len(table):
        raise CodecError("bad_frame", f"{name}: flags {flags:#06x} name groups beyond the {len(table)} it has")
    body = payload[HEADER_LEN:]
    needed = 2 * sum(g.length for i, g in enumerate(table) if flags >> i & 1)
    if len(body) < needed:
        raise CodecError("short_frame", f"{name}: flags {flags:#06x} need {needed} data bytes, got {len(body)}")
    if len(body) > needed:
        raise CodecError("bad_frame", f"{name}: {len(body) - needed} bytes after the flagged groups")
    words = struct.unpack(f">{needed // 2}H", body)
    out: list[RawReading] = []
    cur = 0
    for i, group in enumerate(table):
        if not flags >> i & 1:
            continue
        x = words[cur:cur + group.length]
        cur += group.length
        if group.sentinel is not None and (why := group.sentinel(x)) is not None:
            raise CodecError("sensor_sentinel", f"{name}: {why}")
        out.extend(RawReading(v.metric, float(v.convert(x)), v.unit) for v in group.values)
    return out


def sht21_temperature(word: int) -> float:
    """Sensirion SHT2x temperature word -> degC (vendor: ``175.72 * x / 65536 - 46.85``)."""
    return 175.72 * word / 65536 - 46.85


def sht21_humidity(word: int) -> float:
    """Sensirion SHT2x humidity word -> fraction 0..1 (vendor: ``125 * x / 65536 - 6`` %)."""
    return (125 * word / 65536 - 6) / 100


def co2_offset(word: int) -> float:
    """CO2 word with the vendor's 32768 offset -> ppm (vendor: ``x - 32768``)."""
    return float(word - 32768)
