"""Replays through the pipeline: a capture file (offline, writes nothing) and dead letters (into
InfluxDB, after a fix such as a newly registered device or a new codec).

Capture file: UTF-8 text, one message per line, ``<topic><TAB><payload>``; the payload runs to
the end of the line (JSON payloads are single-line). A payload written ``base64:<data>`` is
decoded first, for binary payloads. Blank lines and lines starting with ``#`` are skipped.
Read the file with ``errors="surrogateescape"``: bytes that are not UTF-8 then reach the
pipeline unchanged, and the records show them as ``\\xNN`` escapes (:func:`printable`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.deadletter import DeadLetterStore
from ingest.pipeline import Pipeline
from lorong.core.model import DeviceInfo, Message
from lorong.storage.influx import chunks

_HEX16 = re.compile(r"[0-9A-Fa-f]{16}")


class StaticDevices:
    """A fixed set of devices (from a CSV file) with the registry's id rules: DevEUIs match
    case-insensitively.

    Args:
        devices: the devices; retired ones must already be left out.
    """

    def __init__(self, devices: Iterable[DeviceInfo]) -> None:
        self._by_id = {self._key(d.device_id): d for d in devices}

    @staticmethod
    def _key(device_id: str) -> str:
        return device_id.upper() if _HEX16.fullmatch(device_id) else device_id

    def get(self, device_id: str) -> DeviceInfo | None:
        """The device, or ``None``."""
        return self._by_id.get(self._key(device_id))

    def __len__(self) -> int:
        return len(self._by_id)


def printable(text: str) -> str:
    """``text`` made valid UTF-8: undecodable bytes carried as surrogate escapes (PEP 383) become
    the four characters ``\\xNN``, any other lone surrogate ``\\udNNN``; other text is unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: printable(v) if isinstance(v, str) else v for k, v in record.items()}


def read_capture(lines: Iterable[str]) -> Iterator[tuple[int, str, bytes | None]]:
    """Split a capture into ``(line number, topic, payload)``; ``payload`` is ``None`` for a line
    without a tab or with bad ``base64:`` data. Line numbers start at 1. Surrogate escapes in the
    payload turn back into their original bytes."""
    for n, raw in enumerate(lines, start=1):
        text = raw.rstrip("\r\n")
        if not text.strip() or text.startswith("#"):
            continue
        topic, tab, body = text.partition("\t")
        if not tab:
            yield n, topic, None
            continue
        if body.startswith("base64:"):
            try:
                yield n, topic, base64.b64decode(body[7:], validate=True)
            except (binascii.Error, ValueError):
                yield n, topic, None
            continue
        yield n, topic, body.encode("utf-8", "surrogateescape")


def replay_capture(lines: Iterable[str], pipeline: Pipeline, received_at: datetime,
                   counts: Counter[str] | None = None) -> Iterator[dict[str, Any]]:
    """Run every message of a capture through ``pipeline``; nothing is written anywhere.

    Args:
        lines: the capture's lines.
        pipeline: the pipeline (its device lookup decides which devices are known).
        received_at: receive time given to every message (tz-aware UTC).
        counts: if given, incremented per outcome: ``received``, ``accepted``, ``rejected``,
            ``duplicate``.

    Yields:
        JSON-able records whose strings are valid UTF-8 (:func:`printable`): per stored reading
        ``{"line", "topic", "device_id", "metric", "value", "unit", "ts"}``; per rejected message
        ``{"line", "topic", "reject", "detail"}``; per duplicate ``{"line", "topic", "duplicate":
        true}``. A line without a tab is rejected as ``bad_capture_line``.
    """
    tally: Counter[str] = counts if counts is not None else Counter()
    for n, topic, payload in read_capture(lines):
        tally["received"] += 1
        if payload is None:
            tally["rejected"] += 1
            yield _clean({"line": n, "topic": topic, "reject": "bad_capture_line",
                   "detail": "expected <topic><TAB><payload> (payload may be base64:<data>)"})
            continue
        result = pipeline.process(Message(topic, payload, received_at))
        if result.error is not None:
            tally["rejected"] += 1
            yield _clean({"line": n, "topic": topic, "reject": result.error.reason, "detail": result.error.detail})
        elif result.duplicate and not result.readings:
            tally["duplicate"] += 1
            yield _clean({"line": n, "topic": topic, "duplicate": True})
        else:
            tally["accepted"] += 1
            for r in result.readings:
                yield _clean({"line": n, "topic": topic, "device_id": r.device_id, "metric": r.metric, "value": r.value,
                       "unit": r.unit, "ts": r.ts.isoformat()})


@dataclass
class DeadLetterReplay:
    """Outcome of :func:`replay_dead_letters`.

    Attributes:
        replayed: ids of dead letters that passed and whose points were written.
        still_rejected: id -> reason of those that were rejected again (they stay pending).
        points: line-protocol points written.
    """

    replayed: list[int] = field(default_factory=list)
    still_rejected: dict[int, str] = field(default_factory=dict)
    points: int = 0


def replay_dead_letters(store: DeadLetterStore, pipeline: Pipeline, write: Callable[[Sequence[str]], None],
                        now: datetime, reason: str | None = None, limit: int = 10_000,
                        batch_size: int = 5000) -> DeadLetterReplay:
    """Re-process pending dead letters, oldest first, with each one's original receive time.

    Those that pass are written with ``write`` (``InfluxClient.write_lines``) in batches of
    ``batch_size`` and then marked replayed at ``now``; the others stay pending. Writing first
    and marking after means a crash in between replays them again later, which InfluxDB turns
    into a rewrite of the same points.

    Args:
        store: the dead-letter store.
        pipeline: a pipeline with the current registry and codecs.
        write: stores line-protocol points; raises to abort (nothing is marked).
        now: replay time recorded on the rows (tz-aware UTC).
        reason: only dead letters with this reason code.
        limit: at most this many dead letters (the newest ``limit``).
        batch_size: points per ``write`` call.

    Raises:
        StoreError: from ``write``; no dead letter is marked replayed.
    """
    rows = sorted(store.list(reason=reason, limit=limit, pending_only=True), key=lambda r: r.id)
    out = DeadLetterReplay()
    lines: list[str] = []
    for row in rows:
        at = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
        result = pipeline.process(Message(row.topic, bytes(row.payload), at))
        if result.error is not None:
            out.still_rejected[row.id] = result.error.reason
            continue
        lines.extend(result.lines)
        out.replayed.append(row.id)
    for batch in chunks(lines, batch_size):
        write(batch)
    out.points = len(lines)
    if out.replayed:
        store.mark_replayed(out.replayed, now)
    return out
