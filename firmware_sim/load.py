"""``lorong sim load``: put a scenario's devices and messages into the registry, InfluxDB and the dead-letter
store through the ingest pipeline, each message received at its simulated time.

This module joins the simulator to ``ingest``, ``devices`` and ``storage`` on purpose (it is the
scenario's loader, the one place a simulated city meets the real store); the rest of ``firmware_sim``
imports only ``core``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.registry import DeviceIn, RegistryLookup, add_device, normalize_id
from firmware_sim.scenario import iter_messages
from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.pipeline import Pipeline
from ingest.validate import Policy
from lorong.core.errors import ConfigError
from lorong.core.model import Message
from lorong.storage.influx import InfluxClient
from lorong.storage.retention import existing_policies
from lorong.storage.tables import DeadLetterRow, DeviceRow

BATCH_POINTS = 5000
"""Line-protocol points per InfluxDB write (InfluxDB 1.x docs advise batches of 5,000-10,000 points)."""


@dataclass
class LoadReport:
    """Outcome of :func:`load_scenario`.

    Attributes:
        messages: lines of ``messages.jsonl`` processed.
        devices_new: devices added to the registry (ids already registered are kept as they are).
        points: line-protocol points written to InfluxDB.
        duplicates: messages dropped by deduplication (LoRaWAN copies).
        rejects: dead letters stored, by reason code.
        pickups: pickups recorded from the loaded span (``lorong demo``'s past,
            :func:`firmware_sim.live_store.backfill`).
        seconds: wall time of the load, s.
    """

    messages: int = 0
    devices_new: int = 0
    points: int = 0
    duplicates: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    pickups: int = 0
    seconds: float = 0.0


def register_city(doc: dict[str, Any], sessions: sessionmaker[Session]) -> str:
    """The registry city a scenario's devices join, from its ``city.json``: the city whose id is the
    scenario city's name, added as the demo adds its cities when it is not registered
    (:func:`firmware_sim.demo_cities.register_cities`: the file's zone, kecamatan, map centre and
    rounds), so that the job runs the scenario in its own zone with its own rounds.

    Args:
        doc: a parsed ``city.json`` (:class:`firmware_sim.city.CityConfig` fields).
        sessions: the Lorong database.

    Returns:
        The city id.

    Raises:
        ValueError: the name is not a city id (:data:`lorong.core.settings.CITY_ID`), the file's zone,
            kecamatan or rounds are not valid, or the city is registered with another zone.
    """
    from firmware_sim.city import CityConfig
    from firmware_sim.demo_cities import file_city, register_cities

    entry = file_city(CityConfig.model_validate(doc))
    try:
        with sessions.begin() as s:
            register_cities(s, [entry])
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return entry.id


def register_devices(rows: list[dict[str, Any]], sessions: sessionmaker[Session], city: str | None = None) -> int:
    """Add registry rows (fields of :class:`devices.registry.DeviceIn`) whose id is not registered yet.

    Args:
        rows: the devices.
        sessions: the Lorong database.
        city: the city id of rows that name none (None: the registry's only city).

    Returns:
        how many were added.

    Raises:
        pydantic.ValidationError: a row that is not a valid device.
    """
    n = 0
    with sessions.begin() as s:
        for row in rows:
            dev = DeviceIn.model_validate({"city_id": city, **row} if city is not None else row)
            if s.get(DeviceRow, normalize_id(dev.id)) is None:
                add_device(s, dev)
                n += 1
    return n


def load_scenario(folder: Path, sessions: sessionmaker[Session], influx: InfluxClient,
                  policy: Policy | None = None, batch_points: int = BATCH_POINTS) -> LoadReport:
    """Register the scenario's city (:func:`register_city`, from ``folder/city.json`` when there is one)
    and ``folder/devices.json`` in it, then run every message of ``folder/messages.jsonl`` through
    :class:`ingest.pipeline.Pipeline` with its ``rx`` as receive time; write the points to ``influx`` in
    batches of ``batch_points`` and store the rejections as dead letters received at their ``rx``.

    Args:
        folder: a scenario written by ``lorong sim scenario``.
        sessions: the Lorong database (registry, dead letters).
        influx: the InfluxDB client (its database must exist).
        policy: validation limits (the ingester's defaults unless given).
        batch_points: points per write.

    Returns:
        the :class:`LoadReport`.

    Raises:
        OSError: a missing or unreadable file.
        ValueError: a bad ``devices.json`` or message line (named in the message).
        StoreError: InfluxDB unavailable or refusing points (points already written stay written).
    """
    began = time.monotonic()
    report = LoadReport()
    try:
        rows = json.loads((folder / "devices.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder / 'devices.json'}: not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{folder / 'devices.json'}: expected a list of devices")
    city_file = folder / "city.json"
    city = None
    if city_file.is_file():
        try:
            city = register_city(json.loads(city_file.read_text(encoding="utf-8")), sessions)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{city_file}: not JSON: {exc}") from None
        except ValidationError as exc:
            raise ValueError(f"{city_file}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    report.devices_new = register_devices(rows, sessions, city)
    load_messages(iter_messages(folder / "messages.jsonl"), sessions, influx, policy, batch_points, report)
    report.seconds = time.monotonic() - began
    return report


def _not_stored_yet(letters: list[DeadLetter], sessions: sessionmaker[Session]) -> list[DeadLetter]:
    """``letters`` without those already stored (same topic, payload and receive time): a scenario
    loaded again stores its rejects once, as InfluxDB keeps its points once."""
    if not letters:
        return letters

    def utc(ts: datetime) -> datetime:
        return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)

    lo, hi = min(utc(d.received_at) for d in letters), max(utc(d.received_at) for d in letters)
    with sessions() as s:
        rows = s.execute(select(DeadLetterRow.topic, DeadLetterRow.payload, DeadLetterRow.received_at)
                         .where(DeadLetterRow.received_at >= lo, DeadLetterRow.received_at <= hi))
        seen = {(t, bytes(p), utc(at)) for t, p, at in rows}
    return [d for d in letters if (d.topic, bytes(d.payload), utc(d.received_at)) not in seen]


def load_messages(messages: Iterable[Message], sessions: sessionmaker[Session], influx: InfluxClient,
                  policy: Policy | None = None, batch_points: int = BATCH_POINTS,
                  report: LoadReport | None = None) -> LoadReport:
    """Run ``messages`` through :class:`ingest.pipeline.Pipeline`, each received at its ``received_at``;
    write the points to ``influx`` in batches of ``batch_points`` and store the rejections as dead
    letters received at their ``received_at``. Their devices must be registered.

    Args:
        messages: MQTT messages (topic, payload bytes, tz-aware receive time), in receive order.
        sessions, influx, policy, batch_points: as :func:`load_scenario`.
        report: counts are added to it (a new one when not given); ``seconds`` is this call's wall time.

    Returns:
        the :class:`LoadReport`.

    Raises:
        StoreError: InfluxDB unavailable or refusing points (points already written stay written).
    """
    began = time.monotonic()
    report = report or LoadReport()
    pipeline = Pipeline(RegistryLookup(sessions), policy or Policy(), keep_readings=False)
    letters: list[DeadLetter] = []
    lines: list[str] = []
    rejects: Counter[str] = Counter(report.rejects)
    for msg in messages:
        report.messages += 1
        result = pipeline.process(msg)
        if result.error is not None:
            rejects[result.error.reason] += 1
            err = result.error
            letters.append(DeadLetter(msg.topic, msg.payload, err.reason, err.detail, msg.received_at,
                                      result.device_id))
            continue
        if result.duplicate and not result.lines:
            report.duplicates += 1
        lines += result.lines
        if len(lines) >= batch_points:
            influx.write_lines(lines)
            report.points += len(lines)
            lines = []
    if lines:
        influx.write_lines(lines)
        report.points += len(lines)
    DeadLetterStore(sessions).add_many(_not_stored_yet(letters, sessions))
    report.rejects = dict(sorted(rejects.items()))
    report.seconds = time.monotonic() - began
    return report


def beyond_retention(influx: InfluxClient, start: datetime, now: datetime) -> int | None:
    """Days the database's default retention policy keeps, when readings from ``start`` are older
    than that (InfluxDB would drop them: "points beyond retention policy"); None when the database
    keeps them (no such policy, or ``INF``, or long enough).

    Args:
        influx: client on the target database (which exists).
        start: the scenario's first simulated time, tz-aware.
        now: the current time, tz-aware.
    """
    default = next((p for p in existing_policies(influx).values() if p.default), None)
    if default is None or default.days == 0 or start >= now - timedelta(days=default.days):
        return None
    return default.days

