"""Helpers for the delivery and fault tests (no tests here).

Every test publishes a known set of native ``lorong-json`` uplinks, each with its own sequence
number and its own device ``time`` (1 ms apart), so each is its own InfluxDB point, and then
compares the (device, time) pairs stored in InfluxDB with the ones published.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devices.registry import DeviceIn, RegistryLookup, add_device
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.service import Ingester
from lorong.core.model import DeviceKind
from lorong.core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from lorong.storage.influx import InfluxClient

FLEET = tuple(f"DLV-{i:02d}" for i in range(8))
TOPICS = ["lorong/v1/+/up"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One published uplink and the point it must become."""

    topic: str
    payload: bytes
    device: str
    ts_ms: int


def register_fleet(sessions: Any, devices: Sequence[str] = FLEET) -> None:
    """Register ``devices`` as air stations in Tallo."""
    with sessions.begin() as s:
        for d in devices:
            add_device(s, DeviceIn(id=d, kind=DeviceKind.AIR, kecamatan="Tallo"))


def uplinks(n: int, start: int = 0, devices: Sequence[str] = FLEET, base_ms: int | None = None,
            with_seq: bool = True) -> list[Sent]:
    """Uplinks ``start`` .. ``start + n - 1``: message k comes from ``devices[k % len]`` with
    ``seq`` k (unless ``with_seq`` is false), device time ``base_ms + k`` ms (default base: two
    hours ago) and pm25 ``k % 1000``."""
    base = base_ms if base_ms is not None else (int(time.time()) - 7200) * 1000
    out = []
    for k in range(start, start + n):
        device, ts_ms = devices[k % len(devices)], base + k
        when = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
        body: dict[str, Any] = {"device_id": device, "time": when,
                                "metrics": {"pm25": {"value": float(k % 1000), "unit": "ug/m3"}}}
        if with_seq:
            body["seq"] = k
        out.append(Sent(f"lorong/v1/{device}/up", json.dumps(body).encode(), device, ts_ms))
    return out


def stored(influx: InfluxClient, prefix: str = "DLV-") -> list[tuple[str, int]]:
    """Every (device, time ms) of ``air_quality`` points of devices whose id starts with ``prefix``,
    repeats included."""
    series = influx.query(f'SELECT "pm25" FROM "air_quality" WHERE "device_id" =~ /^{prefix}/ GROUP BY "device_id"')
    return [(s.tags["device_id"], int(row[0])) for s in series for row in s.values]


def assert_stored_exactly(influx: InfluxClient, sent: Sequence[Sent], prefix: str = "DLV-") -> None:
    """Stored == published: the same (device, time) pairs, none missing, none twice."""
    got = stored(influx, prefix)
    want = {(u.device, u.ts_ms) for u in sent}
    assert len(got) == len(set(got)), "a point is stored twice"
    missing, extra = want - set(got), set(got) - want
    assert not missing and not extra, f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra"
    per_device = {d: sum(1 for g in got if g[0] == d) for d in {u.device for u in sent}}
    assert per_device == {d: sum(1 for u in sent if u.device == d) for d in per_device}


def count_stored(influx: InfluxClient, prefix: str = "DLV-") -> int:
    """Number of stored points of the test fleet (0 while InfluxDB does not answer)."""
    try:
        rows = influx.records(f'SELECT count("pm25") FROM "air_quality" WHERE "device_id" =~ /^{prefix}/')
    except Exception:
        return 0
    return int(rows[0]["count"]) if rows else 0


def settings_for(tmp_path: Path, db_url: str, mqtt_port: int, influx: InfluxClient, client_id: str,
                 topics: Sequence[str] = TOPICS, **ingest: Any) -> Settings:
    """Settings for one in-process ingester; ``ingest`` overrides :class:`IngestSettings` fields."""
    return Settings.model_validate({
        "var_dir": tmp_path / "var",
        "database_url": db_url,
        "mqtt": MqttSettings(port=mqtt_port, client_id=client_id, topics=list(topics)),
        "influx": InfluxSettings(url=influx.url, database=influx.database),
        "ingest": IngestSettings(spool_dir=tmp_path / "spool", flush_interval_s=0.05, **ingest),
    })


def start_ingester(settings: Settings, sessions: Any, influx: InfluxClient, subscribed_within_s: float = 15.0
                   ) -> Ingester:
    """A started in-process ingester, subscribed."""
    ing = Ingester(settings, RegistryLookup(sessions), DeadLetterStore(sessions),
                   InfluxClient(influx.url, influx.database))
    ing.start()
    assert ing.source.subscribed.wait(subscribed_within_s), "ingester did not subscribe"
    return ing


def ingester_env(tmp_path: Path, db_url: str, mqtt_port: int, influx: InfluxClient, client_id: str,
                 metrics_port: int) -> dict[str, str]:
    """``LORONG_*`` variables for ``lorong ingest run`` as a subprocess."""
    return {
        "LORONG_VAR_DIR": str(tmp_path / "var"),
        "LORONG_DATABASE_URL": db_url,
        "LORONG_MQTT__HOST": "127.0.0.1",
        "LORONG_MQTT__PORT": str(mqtt_port),
        "LORONG_MQTT__CLIENT_ID": client_id,
        "LORONG_MQTT__TOPICS": json.dumps(TOPICS),
        "LORONG_INFLUX__URL": influx.url,
        "LORONG_INFLUX__DATABASE": influx.database,
        "LORONG_INGEST__SPOOL_DIR": str(tmp_path / "spool"),
        "LORONG_INGEST__FLUSH_INTERVAL_S": "0.05",
        "LORONG_INGEST__METRICS_PORT": str(metrics_port),
    }


def scrape(port: int) -> dict[str, float]:
    """Samples of an ingester's ``/metrics`` as ``{"name{label=value}": value}`` (``{}`` when down)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


class PacedPublisher(threading.Thread):
    """Publishes ``sent`` at QoS 1 in chunks of ``chunk`` messages, ``pause_s`` apart, on its own
    thread; each chunk waits for the broker's PUBACKs (paho resends unacknowledged ones after a
    reconnect). ``done`` counts the messages acknowledged so far; ``error`` holds a failure."""

    def __init__(self, port: int, sent: Sequence[Sent], chunk: int = 50, pause_s: float = 0.02,
                 client_id: str = "dlv-publisher") -> None:
        super().__init__(name="paced-publisher", daemon=True)
        self.pub = Publisher("127.0.0.1", port, client_id=client_id)
        self.sent, self.chunk, self.pause_s = list(sent), chunk, pause_s
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(0, len(self.sent), self.chunk):
                part = self.sent[i:i + self.chunk]
                self.pub.publish_many([(u.topic, u.payload) for u in part], timeout_s=60)
                self.done += len(part)
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout_s: float = 120.0) -> None:
        """Wait for the last PUBACK, then disconnect; fail on a publish error."""
        self.join(timeout_s)
        self.pub.close()
        assert not self.is_alive(), "publisher did not finish"
        assert self.error is None, f"publisher failed: {self.error!r}"
        assert self.done == len(self.sent)
