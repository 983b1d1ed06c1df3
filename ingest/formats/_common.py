"""Helpers shared by the payload formats (JSON decoding, ISO-8601 times)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core.errors import ParseError


def load_json_object(payload: bytes, fmt: str) -> dict[str, Any]:
    """Decode a UTF-8 JSON object.

    Raises:
        ParseError: reason ``bad_json`` (not UTF-8, not JSON, or not an object).
    """
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError("bad_json", f"{fmt}: {exc}") from None
    if not isinstance(obj, dict):
        raise ParseError("bad_json", f"{fmt}: expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_time(value: Any, fmt: str, require_offset: bool = True) -> datetime:
    """Parse an ISO-8601 / RFC 3339 time into tz-aware UTC.

    Nanosecond fractions (TTN sends 9 digits) are cut to microseconds.

    Raises:
        ParseError: reason ``bad_time`` (not a string, unparsable, or no offset when required).
    """
    if not isinstance(value, str):
        raise ParseError("bad_time", f"{fmt}: time must be an ISO-8601 string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest[digits:]
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ParseError("bad_time", f"{fmt}: unparsable time {value!r}") from None
    if ts.tzinfo is None:
        if require_offset:
            raise ParseError("bad_time", f"{fmt}: time {value!r} has no UTC offset")
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
