"""Golden cases of every payload format, walked by one test (STYLE.md R4).

Layout: ``tests/ingest/cases/<format>/<case>/``

- ``topic.txt``: the MQTT topic;
- ``payload.json`` or ``payload.txt``: the payload bytes (for real third-party inputs a byte copy
  of the file named in ``source.txt``, which lives under ``tests/data`` with its licence row);
- ``received_at.txt`` (optional): receive time, ISO-8601 (default :data:`RECEIVED_AT`);
- ``devices.json`` (optional): registry entries (``DeviceInfo`` fields) for the full pipeline;
- ``expected.jsonl``: ``{"uplink": ...}`` lines = what ``parse`` returns, then, when
  ``devices.json`` exists and the message is accepted, ``{"reading": ...}`` lines = what
  ``Pipeline.process`` stores;
- ``expected.err``: the rejection: first line the reason code, optional second line a regular
  expression the detail must contain. Without ``expected.jsonl`` the parser itself raises; with
  both, parsing succeeds and validation rejects.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.formats import FORMATS, format_for_topic, get_parser
from ingest.pipeline import Pipeline
from lorong.core.errors import ParseError
from lorong.core.model import DeviceInfo, DeviceKind, Message, Reading, Uplink

HERE = Path(__file__).parent
DATA = HERE.parent / "data"
CASES = sorted(p for p in (HERE / "cases").glob("*/*") if p.is_dir())
RECEIVED_AT = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def _round(x: Any) -> Any:
    """Floats rounded to 9 decimals, recursively: golden files hold decimal literals. Non-finite
    floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no literal for them)."""
    if isinstance(x, float):
        return round(x, 9) if math.isfinite(x) else str(x)
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def uplink_json(up: Uplink) -> dict[str, Any]:
    """An :class:`Uplink` as a JSON-able dict (frame bytes as hex, tags as an object)."""
    return _round({
        "device_id": up.device_id,
        "readings": [{"metric": r.metric, "value": r.value, "unit": r.unit, "ts": _iso(r.ts)} for r in up.readings],
        "frame": {"fport": up.frame.fport, "hex": up.frame.payload.hex()} if up.frame else None,
        "fcnt": up.fcnt,
        "ts": _iso(up.ts),
        "tags": dict(up.tags),
    })


def reading_json(r: Reading) -> dict[str, Any]:
    """A validated :class:`Reading` as a JSON-able dict (``received_at`` left out: it is the case's)."""
    return _round({"device_id": r.device_id, "metric": r.metric, "value": r.value, "unit": r.unit,
                   "ts": r.ts.isoformat()})


def load_case(case: Path) -> tuple[str, bytes, datetime, dict[str, DeviceInfo] | None]:
    """Topic, payload, receive time and devices (or ``None``) of a case folder."""
    topic = (case / "topic.txt").read_text().strip()
    payload = next(case.glob("payload.*")).read_bytes()
    at = case / "received_at.txt"
    received_at = datetime.fromisoformat(at.read_text().strip()) if at.exists() else RECEIVED_AT
    devices = None
    if (case / "devices.json").exists():
        rows = json.loads((case / "devices.json").read_text())
        devices = {r["device_id"]: DeviceInfo(**{**r, "kind": DeviceKind(r["kind"])}) for r in rows}
    return topic, payload, received_at, devices


def run_case(case: Path) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """Run a case: (expected-style lines, rejection (reason, detail) or ``None``)."""
    topic, payload, received_at, devices = load_case(case)
    parse = get_parser(case.parent.name)
    try:
        lines: list[dict[str, Any]] = [{"uplink": uplink_json(u)} for u in parse(payload, topic, received_at)]
    except ParseError as exc:
        return [], (exc.reason, exc.detail)
    if devices is None:
        return lines, None
    fmt = case.parent.name
    result = Pipeline(devices, format_of=lambda _t: fmt).process(Message(topic, payload, received_at))
    if result.error is not None:
        return lines, (result.error.reason, result.error.detail)
    return lines + [{"reading": reading_json(r)} for r in result.readings], None


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden(case: Path) -> None:
    lines, error = run_case(case)
    exp_lines = case / "expected.jsonl"
    exp_err = case / "expected.err"
    assert exp_lines.exists() or exp_err.exists(), "a case needs expected.jsonl and/or expected.err"
    if exp_lines.exists():
        expected = [json.loads(x) for x in exp_lines.read_text().splitlines() if x.strip()]
        assert lines == _round(expected)
    if exp_err.exists():
        reason, *pattern = exp_err.read_text().strip().splitlines()
        assert error is not None, f"expected rejection {reason}, got {lines}"
        assert error[0] == reason, error
        if pattern:
            assert re.search(pattern[0], error[1]), error[1]
    else:
        assert error is None, error


def test_every_format_has_cases() -> None:
    assert {c.parent.name for c in CASES} == set(FORMATS)


@pytest.mark.parametrize("case", [c for c in CASES if (c / "source.txt").exists()], ids=lambda p: p.name)
def test_real_payloads_are_byte_copies(case: Path) -> None:
    """Real third-party payloads stay byte-identical to their tests/data copy (and its SOURCES row)."""
    source = DATA / (case / "source.txt").read_text().strip()
    assert next(case.glob("payload.*")).read_bytes() == source.read_bytes()
    assert source.relative_to(DATA).parts[0] in (DATA / "SOURCES.md").read_text()


def _routable(case: Path) -> bool:
    err = case / "expected.err"
    return not (err.exists() and err.read_text().startswith("bad_topic"))


@pytest.mark.parametrize("case", [c for c in CASES if _routable(c)], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_topic_routes_to_its_format(case: Path) -> None:
    assert format_for_topic((case / "topic.txt").read_text().strip()) == case.parent.name


def test_uplink_json_covers_every_field() -> None:
    up = Uplink("X", fcnt=1)
    assert set(uplink_json(up)) == set(up._fields)
