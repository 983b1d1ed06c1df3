"""A scenario: the city's bins (:mod:`firmware_sim.city_bins`) and air stations (:mod:`firmware_sim.city_air`)
merged into the four files of ``firmware_sim/SCENARIO.md``: ``city.json``, ``devices.json``,
``messages.jsonl`` and ``truth.json``.

Deterministic: the same city, seed and days give byte-identical files (sorted lists, sorted JSON keys,
no clock, no global random state).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from firmware_sim.city import CityConfig
from firmware_sim.city_bins import Thresholds, ms_iso, simulate_bins
from lorong.core.model import Message
from lorong.core.settings import AnalyticsSettings

TRUTH_VERSION = 1
"""Version of the ``truth.json`` layout (SCENARIO.md)."""


@dataclass
class Scenario:
    """A simulated scenario in memory.

    Attributes:
        city: the city as simulated (file merged with defaults, seed, days, sizes).
        devices: registry rows (fields of ``devices.registry.DeviceIn``), bins then stations.
        messages: ``(rx ISO-8601 UTC with ms, topic, payload text)``, sorted by rx (then topic, payload).
        truth: the ``truth.json`` object.
    """

    city: CityConfig
    devices: list[dict[str, Any]]
    messages: list[tuple[str, str, str]]
    truth: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Counts for a report: messages, devices, events by type (required ones apart), pickups, time span."""
        events = Counter(e["type"] for e in self.truth["events"])
        required = Counter(e["type"] for e in self.truth["events"] if e["required"])
        return {"messages": len(self.messages), "devices": len(self.devices),
                "events": dict(sorted(events.items())), "required": dict(sorted(required.items())),
                "pickups": len(self.truth["pickups"]), "start": self.truth["start"], "end": self.truth["end"],
                "first_rx": self.messages[0][0] if self.messages else None,
                "last_rx": self.messages[-1][0] if self.messages else None}


def thresholds(settings: AnalyticsSettings | None = None) -> Thresholds:
    """The truth's thresholds from the analytics settings (their defaults unless given)."""
    a = settings or AnalyticsSettings()
    return Thresholds(full=a.full_threshold, overflow=a.overflow_threshold, battery_low=a.battery_low,
                      stuck_readings=a.stuck_readings, pickup_min_drop=a.pickup_min_drop)


def build_scenario(city: CityConfig, seed: int | None = None, days: int | None = None,
                   bins: int | None = None, stations: int | None = None) -> Scenario:
    """Simulate ``city``; arguments given override the city file's values.

    Raises:
        ValueError: a bad ``air`` section (from :func:`firmware_sim.city_air.simulate_air`) or sizes.
    """
    update: dict[str, Any] = {k: v for k, v in (("seed", seed), ("days", days), ("bins", bins),
                                                 ("stations", stations)) if v is not None}
    city = CityConfig.model_validate({**city.model_dump(), **update})
    th = thresholds()
    b = simulate_bins(city, city.seed, city.days, th)
    devices = list(b.devices)
    messages = [(ms_iso(rx), topic, payload.decode()) for rx, topic, payload in b.messages]
    events, lookalikes = list(b.events), list(b.lookalikes)
    if city.stations:
        from firmware_sim.city_air import simulate_air

        air_cfg = {"id_prefix": city.id_prefix, **city.air}
        a = simulate_air(air_cfg, city.kecamatan, city.stations, city.start, city.days, city.seed, city.timezone)
        installed = (city.start - timedelta(days=30)).isoformat()
        devices += [{"installed_at": installed, **d} for d in a.devices]
        messages += [(ms_iso(rx.timestamp()), topic, payload.decode()) for rx, topic, payload in a.messages]
        events += a.events
        lookalikes += a.lookalikes
    messages.sort()
    start = city.start.astimezone(UTC)
    a_set = AnalyticsSettings()
    truth = {
        "version": TRUTH_VERSION, "city": city.name, "seed": city.seed, "days": city.days,
        "start": start.isoformat(), "end": (start + timedelta(days=city.days)).isoformat(),
        "timezone": city.timezone,
        "settings": {"full_threshold": th.full, "overflow_threshold": th.overflow, "pm25_limit": a_set.pm25_limit,
                     "battery_low": th.battery_low, "stuck_readings": th.stuck_readings,
                     "pickup_min_drop": th.pickup_min_drop},
        "events": sorted(events, key=lambda e: (e["start"], e["type"], e["device_id"], e["end"] or "")),
        "lookalikes": sorted(lookalikes, key=lambda e: (e["at"], e["type"], e["device_id"], e["what"])),
        "pickups": sorted(b.pickups, key=lambda p: (p["at"], p["device_id"])),
        "cycles": sorted(b.cycles, key=lambda c: (c["device_id"], c["start"])),
        "routes": b.routes,
    }
    return Scenario(city, devices, messages, truth)


def _dump(obj: object) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_scenario(scenario: Scenario, out: Path) -> None:
    """Write the four files into ``out`` (created if missing; files there are replaced).

    Raises:
        OSError: the folder cannot be created or written.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "city.json").write_text(_dump(scenario.city.model_dump(mode="json")), encoding="utf-8")
    (out / "devices.json").write_text(_dump(scenario.devices), encoding="utf-8")
    with (out / "messages.jsonl").open("w", encoding="utf-8") as fh:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        fh.writelines(dumps({"rx": rx, "topic": topic, "payload": payload}) + "\n"
                      for rx, topic, payload in scenario.messages)
    (out / "truth.json").write_text(_dump(scenario.truth), encoding="utf-8")


def iter_messages(path: Path) -> Iterator[Message]:
    """Read a ``messages.jsonl`` line by line: a :class:`lorong.core.model.Message` (topic, payload bytes,
    receive time tz-aware) per line, in file order.

    Raises:
        OSError: unreadable file.
        ValueError: a line that is not ``{"rx", "topic", "payload"}`` JSON (its number in the message).
    """
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
                yield Message(str(obj["topic"]), str(obj["payload"]).encode(), datetime.fromisoformat(obj["rx"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}:{n}: not a message line ({exc})") from None
