"""SenML JSON packs (RFC 8428, ``senml``), e.g. from LwM2M gateways and small Wi-Fi sensors.

Topic ``senml/<device>``; payload a SenML JSON pack (``application/senml+json``)::

    [{"bn": "MKS-AIR-07/", "bt": 1.7644e9, "n": "temperature", "u": "Cel", "v": 31.2},
     {"n": "humidity", "u": "%RH", "v": 78},
     {"n": "pm25", "u": "ug/m3", "v": 41.5, "t": -60}]

Resolution (:func:`resolve`, RFC 8428 section 4.6): base name + name, base time + time, base
unit when a record has no unit, base value + value, base sum + sum; base fields carry forward
until the next record that sets them. A resolved time below 2**28 is relative to "now", the
receive time (section 4.5.3). Records without any value (only base fields) are dropped.
Rejected packs (``bad_envelope``): not an array of objects, a field of the wrong JSON type,
a must-understand field (name ending in ``_``, section 4.4) or ``bver`` above 10, more than
one of ``v``/``vs``/``vb``/``vd``, a resolved name that breaks section 4.5.1
(``[A-Za-z0-9][A-Za-z0-9:./_-]*``).

Device and metric from the resolved name (Lorong's convention):

- ``urn:dev:<kind>:<id>[:<metric>]`` (RFC 9039 device URNs, as in the RFC 8428 examples):
  device ``<id>``, e.g. ``urn:dev:ow:10e2073a01080063:temp`` is device ``10E2073A01080063``
  (16 hex digits are upper-cased like DevEUIs), metric ``temp``;
- ``<device>/<metric>`` (a base name ending in ``/``): device before the first ``/``;
- a name equal to the topic's device: that device, metric from the unit;
- any other name: a metric of the topic's device.

A pack may name several devices; each gets its own :class:`lorong.core.model.Uplink`. The metric part
is looked up in :mod:`ingest.vendor_keys` (canonical names and vendor spellings); without one the
unit decides (``Cel`` temperature, ``%RH`` humidity, ``%EL`` battery, ``Pa``/``hPa`` pressure,
``ppm`` CO2, ``lx``, ``dBm``). Unknown names, ``lat``/``lon`` and string/data values are skipped.
Units are SenML registry symbols (RFC 8428 section 12.1, RFC 8798) mapped to Lorong's.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from ingest.formats._common import first_per_metric, load_json, topic_parts, utc_from_seconds
from ingest.vendor_keys import KEYS, lookup
from lorong.core.errors import ParseError
from lorong.core.model import RawReading, Uplink

NAME = "senml"
TOPICS = ("senml/+",)
DEVICE_LEVEL = 1
"""Level of ``TOPICS`` holding the device id (0-based): the one place that says so."""

RELATIVE_LIMIT = 2**28
"""Resolved times below this are seconds relative to now (RFC 8428 section 4.5.3)."""

MAX_VERSION = 10
"""SenML version of RFC 8428; packs with a higher ``bver`` are refused."""

UNITS: dict[str, str] = {
    "Cel": "degC", "K": "K", "%RH": "%", "%EL": "%", "%": "%", "/": "1", "/100": "%", "Pa": "Pa",
    "hPa": "hPa", "kPa": "kPa", "m": "m", "cm": "cm", "mm": "mm", "V": "V", "mV": "mV", "ppm": "ppm",
    "ppb": "ppb", "ug/m3": "ug/m3", "kg/m3": "kg/m3", "lx": "lx", "dBm": "dBm",
}
"""SenML unit symbol -> Lorong unit symbol (:mod:`lorong.core.units`)."""

UNIT_METRICS: dict[str, str] = {
    "Cel": "temperature", "K": "temperature", "%RH": "relativeHumidity", "%EL": "batteryLevel",
    "Pa": "pressure", "hPa": "pressure", "ppm": "co2", "lx": "illuminance", "dBm": "rssi",
}
"""Metric of a record whose name has no metric part, by SenML unit."""

_BASE_STR = ("bn", "bu")
_BASE_NUM = ("bt", "bv", "bs")
_NUMBERS = ("t", "v", "s", "ut")
_STRINGS = ("n", "u", "vs", "vd")
_VALUES = ("v", "vs", "vb", "vd")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*")
_HEX16 = re.compile(r"[0-9A-Fa-f]{16}")


def _bad(detail: str) -> ParseError:
    return ParseError("bad_envelope", f"{NAME}: {detail}")


def _check_types(i: int, rec: dict[str, Any]) -> None:
    for key, val in rec.items():
        if key.endswith("_"):
            raise _bad(f"record {i}: must-understand field {key!r:.40} is not supported")
        if key in _BASE_STR + _STRINGS and not isinstance(val, str):
            raise _bad(f"record {i}: {key!r} must be a string")
        if key in _BASE_NUM + _NUMBERS and (isinstance(val, bool) or not isinstance(val, int | float)):
            raise _bad(f"record {i}: {key!r} must be a number")
        if key == "vb" and not isinstance(val, bool):
            raise _bad(f"record {i}: 'vb' must be true or false")
    ver = rec.get("bver")
    if ver is not None and (isinstance(ver, bool) or not isinstance(ver, int) or not 1 <= ver <= MAX_VERSION):
        raise _bad(f"record {i}: unsupported bver {ver!r:.20} (this parser understands 1..{MAX_VERSION})")
    if sum(k in rec for k in _VALUES) > 1:
        raise _bad(f"record {i}: more than one of v, vs, vb, vd")


def resolve(pack: Any, now_s: float) -> list[dict[str, Any]]:
    """Resolve a SenML pack into resolved records (RFC 8428 section 4.6).

    Args:
        pack: the decoded JSON (must be a list of objects).
        now_s: "now" for relative times, Unix seconds (the receive time).

    Returns:
        one dict per record that carries a value, in pack order: ``n`` (str), ``t`` (absolute
        Unix seconds, float), ``u`` when known, one of ``v`` (float) / ``vs`` / ``vb`` / ``vd``
        and/or ``s``, plus ``ut`` and any extension fields as given. No base fields.

    Raises:
        ParseError: ``bad_envelope`` (see the module docstring for the rules).
    """
    if not isinstance(pack, list) or not pack:
        raise _bad("a pack must be a non-empty JSON array of records")
    bn, bu = "", None
    bt = bv = bs = 0.0
    has_bv = has_bs = False
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise _bad(f"record {i} is not an object")
        _check_types(i, rec)
        bn = rec.get("bn", bn)
        bu = rec.get("bu", bu)
        bt = float(rec.get("bt", bt))
        if "bv" in rec:
            bv, has_bv = float(rec["bv"]), True
        if "bs" in rec:
            bs, has_bs = float(rec["bs"]), True
        res: dict[str, Any] = {}
        if "v" in rec:
            res["v"] = bv + rec["v"]
        elif has_bv and not any(k in rec for k in (*_VALUES, "s")):
            res["v"] = bv
        for k in ("vs", "vb", "vd"):
            if k in rec:
                res[k] = rec[k]
        if "s" in rec:
            res["s"] = bs + rec["s"]
        elif has_bs and not res:
            res["s"] = bs
        if not res:
            continue  # base fields only
        name = bn + rec.get("n", "")
        if not _NAME_RE.fullmatch(name):
            raise _bad(f"record {i}: name {name!r:.80} is not a valid SenML name (RFC 8428 section 4.5.1)")
        t = bt + float(rec.get("t", 0.0))
        if t < RELATIVE_LIMIT:
            t += now_s
        extra = {k: v for k, v in rec.items() if k not in ("bn", "bt", "bu", "bv", "bs", "bver", "n", "t", "u",
                                                             *_VALUES, "s")}
        unit = rec.get("u", bu)
        out.append({"n": name, **({"u": unit} if unit is not None else {}), "t": t, **res, **extra})
    return out


def _split_name(name: str, topic_device: str) -> tuple[str, str]:
    """``(device id, metric part)`` of a resolved name, per the module docstring's convention."""
    if name.startswith("urn:dev:"):
        parts = name.split(":")
        if len(parts) < 4 or not parts[3]:
            raise _bad(f"device URN {name!r:.80} has no id")
        device, metric = parts[3], ":".join(parts[4:])
    elif "/" in name:
        device, _, metric = name.partition("/")
    elif name == topic_device:
        device, metric = name, ""
    else:
        device, metric = topic_device, name
    return (device.upper() if _HEX16.fullmatch(device) else device), metric


def _reading(rec: dict[str, Any], metric_part: str) -> RawReading | None:
    senml_unit = rec.get("u")
    if metric_part:
        found = lookup(metric_part)
        if found is None:
            return None
        metric, unit = found[0], found[1]
    elif senml_unit in UNIT_METRICS:
        metric = UNIT_METRICS[senml_unit]
        unit = KEYS[metric.lower()][1]
    else:
        return None
    if senml_unit is not None:
        unit = UNITS.get(senml_unit, senml_unit)  # an unknown unit fails validation as bad_unit
    if "v" in rec:
        value = float(rec["v"])
    elif "vb" in rec and metric in ("tilt", "lidOpen", "alarm"):
        value = 1.0 if rec["vb"] else 0.0
    else:
        return None
    ts = utc_from_seconds(rec["t"], NAME)
    return RawReading(metric, value if math.isfinite(value) else math.inf, unit, ts)


def parse(payload: bytes, topic: str, received_at: datetime) -> list[Uplink]:
    """Parse one SenML JSON pack.

    Args:
        payload: UTF-8 JSON array of SenML records.
        topic: ``senml/<device>``.
        received_at: receive time, the "now" of relative SenML times.

    Returns:
        one :class:`Uplink` per device named in the pack, in order of first appearance; each
        reading carries its own time; of two records with the same metric and time (``temp_2``,
        ``temp_3``) the first is kept.

    Raises:
        ParseError: ``bad_topic``, ``bad_json``, ``bad_envelope``, ``bad_time`` (a time beyond
            year 9999), ``no_readings`` (every record is a base-only record).
    """
    topic_device = topic_parts(topic, NAME, "senml/+")[1]
    records = resolve(load_json(payload, NAME), received_at.timestamp())
    if not records:
        raise ParseError("no_readings", f"{NAME}: the pack has no record with a value")
    by_device: dict[str, list[RawReading]] = {}
    for rec in records:
        device, metric_part = _split_name(rec["n"], topic_device)
        readings = by_device.setdefault(device, [])
        reading = _reading(rec, metric_part)
        if reading is not None:
            readings.append(reading)
    uplinks = [Uplink(device_id=device, readings=first_per_metric(readings)) for device, readings in by_device.items()]
    # a device whose records are all skipped (location, text) is left out, unless none has a value:
    # then validation rejects the pack as no_readings
    return [u for u in uplinks if u.readings] or uplinks[:1]
