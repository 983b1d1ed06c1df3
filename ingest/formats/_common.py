"""Helpers shared by the payload formats: strict JSON decoding, ISO-8601 times, numbers, RSSI.

All helpers are pure and raise :class:`lorong.core.errors.ParseError` (never ``ValueError``,
``RecursionError`` ...), so a format module built on them keeps the "ParseError and nothing else"
contract of :mod:`ingest.formats`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.vendor_keys import as_float
from lorong.core.errors import ParseError
from lorong.core.model import Frame, RawReading


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (RFC 8259 section 6 has no NaN/Infinity)")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def load_json(payload: bytes, fmt: str) -> Any:
    """Decode UTF-8 JSON strictly (RFC 8259).

    ``NaN``/``Infinity`` tokens, which Python's decoder accepts, are refused; so are integers
    longer than Python's 4,300-digit limit and nesting deep enough to exhaust the stack.

    orjson decodes first (about a fifth of the standard decoder's time on a 200-byte uplink);
    what it refuses goes through the standard decoder, so the outcome does not depend on which
    one ran: UTF-16/32 and a BOM, lone surrogates, numbers beyond a double (``1e400`` is
    ``inf``, rejected later as ``non_finite``) are decoded as before. One difference is left:
    orjson gives an integer beyond 64 bits as a float, which every number reader here turns
    into a float anyway.

    Raises:
        ParseError: reason ``bad_json``.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # what json.loads does with bytes, minus building a decoder per call; "{" then a non-zero byte
    # is UTF-8 to json.detect_encoding (no BOM starts with "{", UTF-16/32 put a zero byte second)
    enc = "utf-8" if payload[:1] == b"{" and payload[1:2] != b"\0" else json.detect_encoding(payload)
    try:
        return _DECODER.decode(payload.decode(enc, "surrogatepass"))
    except UnicodeDecodeError as exc:
        raise ParseError("bad_json", f"{fmt}: payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ParseError("bad_json", f"{fmt}: {str(exc)[:200]}") from None


def load_json_object(payload: bytes, fmt: str) -> dict[str, Any]:
    """Decode a UTF-8 JSON object.

    Raises:
        ParseError: reason ``bad_json`` (not UTF-8, not JSON, or not an object).
    """
    obj = load_json(payload, fmt)
    if not isinstance(obj, dict):
        raise ParseError("bad_json", f"{fmt}: expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_time(value: Any, fmt: str, require_offset: bool = True) -> datetime:
    """Parse an ISO-8601 / RFC 3339 time into tz-aware UTC.

    Nanosecond fractions (TTN and ChirpStack send 9 digits) are cut to microseconds.

    Raises:
        ParseError: reason ``bad_time`` (not a string, unparsable, or no offset when required).
    """
    if not isinstance(value, str):
        raise ParseError("bad_time", f"{fmt}: time must be an ISO-8601 string, got {value!r:.80}")
    try:  # Python 3.11 reads "Z" and cuts long fractions itself; the rewriting below is for the rest
        ts = datetime.fromisoformat(value)
    except ValueError:
        ts = _parse_iso(value, fmt)
    if ts.tzinfo is None:
        if require_offset:
            raise ParseError("bad_time", f"{fmt}: time {value!r} has no UTC offset")
        ts = ts.replace(tzinfo=UTC)
    if ts.tzinfo is UTC:
        return ts
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise ParseError("bad_time", f"{fmt}: time {value!r} is out of range") from None


def _parse_iso(value: str, fmt: str) -> datetime:
    """:meth:`datetime.fromisoformat` after trimming blanks, ``z`` and fractions beyond 6 digits.

    Raises:
        ParseError: reason ``bad_time``.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest[digits:]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ParseError("bad_time", f"{fmt}: unparsable time {value!r:.80}") from None


def utc_from_seconds(seconds: float, fmt: str) -> datetime:
    """UTC datetime from Unix epoch seconds.

    Raises:
        ParseError: reason ``bad_time`` when the number is not finite or beyond year 1..9999.
    """
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, ValueError, OSError):
        raise ParseError("bad_time", f"{fmt}: epoch time {seconds!r} is out of range") from None


def as_int(value: Any) -> int | None:
    """``value`` when it is a JSON integer (``true``/``false`` are not), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def best_rssi(values: Iterable[Any]) -> RawReading | None:
    """The strongest gateway's RSSI (dBm) among ``values`` as an ``rssi`` reading, if any is a number."""
    nums = [v for v in (as_float(x) for x in values) if v is not None]
    return RawReading("rssi", max(nums), "dBm") if nums else None


def first_per_metric(readings: Iterable[RawReading]) -> tuple[RawReading, ...]:
    """Keep the first reading of each (metric, time): one message stores one value per field.

    Several keys can map to one metric (CayenneLPP ``temperature_2`` and ``temperature_3``,
    airrohr ``temperature`` and ``BME280_temperature``); line protocol would keep only the last,
    silently, so the rule is made explicit: the first in payload order wins.
    """
    seen: set[tuple[str, datetime | None]] = set()
    out: list[RawReading] = []
    for r in readings:
        key = (r.metric, r.ts)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return tuple(out)


def topic_parts(topic: str, fmt: str, pattern: str) -> list[str]:
    """Split ``topic`` on ``/`` and check it against ``pattern`` (``+`` = one non-empty level).

    Raises:
        ParseError: reason ``bad_topic``.
    """
    parts, want = topic.split("/"), pattern.split("/")
    if len(parts) != len(want) or any(
            (w == "+" and not p) or (w != "+" and w != p) for w, p in zip(want, parts, strict=True)):
        raise ParseError("bad_topic", f"{fmt}: expected topic {pattern}, got {topic!r:.200}")
    return parts


def lorawan_frame(data: Any, fport: Any, fmt: str, keys: tuple[str, str, str]) -> Frame:
    """The undecoded LoRaWAN frame of a network-server uplink: base64 ``data`` on application
    port ``fport`` (LoRaWAN 1.0.4 section 4.3.2: FPort 1..223 carries application data).

    Args:
        data: the envelope's payload field (TTS ``frm_payload``, ChirpStack ``data``), or ``None``.
        fport: the envelope's port field.
        fmt: format name, for messages.
        keys: the envelope's names of its decoded object, payload and port fields, for messages.

    Raises:
        ParseError: ``bad_envelope`` (no payload, no application port), ``bad_base64``.
    """
    decoded_key, data_key, port_key = keys
    if data is None:
        raise ParseError("bad_envelope", f"{fmt}: neither {decoded_key} metrics nor {data_key}")
    if not isinstance(data, str):
        raise ParseError("bad_base64", f"{fmt}: {data_key} is not a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("bad_base64", f"{fmt}: {data_key} is not base64") from None
    port = as_int(fport)
    if port is None or not 1 <= port <= 223:
        raise ParseError("bad_envelope", f"{fmt}: {data_key} needs an application {port_key} 1..223, got {fport!r:.40}")
    return Frame(fport=port, payload=raw)
