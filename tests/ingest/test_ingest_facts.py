"""Each ingest fact has one owner (issue 14, item 30).

- The HTTP status of a refused InfluxDB request travels on :class:`StoreRejected` (real influxd),
  instead of being found again by a regex over the error text.
- Line protocol is built by ``lorong/storage/influx.py`` only: no ingest module escapes names itself.
- Topic layouts: each format names the level of its device id once, and a dead letter carries the
  device id (from the payload when it parsed, else from that layout), so the ``payload_rejects``
  rule counts per device without reading topics.
"""

from __future__ import annotations

import ast
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.jobs import reject_counts
from ingest.formats import device_in_topic
from ingest.pipeline import Pipeline
from lorong.core.errors import StoreRejected
from lorong.core.model import DeviceInfo, DeviceKind, Message
from lorong.storage import stack
from lorong.storage.influx import InfluxClient

ROOT = Path(__file__).parents[2]


@pytest.mark.integration
def test_store_rejected_carries_the_http_status(influxd: stack.Service) -> None:
    missing = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"nowhere_{time.monotonic_ns()}")
    with pytest.raises(StoreRejected) as err:
        missing.write_lines(["m v=1 1"])
    assert err.value.status == 404 and "database not found" in str(err.value)
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"facts_{time.monotonic_ns()}")
    client.create_database()
    try:
        with pytest.raises(StoreRejected) as err:
            client.write_lines(["m,k=Depot\\ v=1 1"])
        assert err.value.status == 400
    finally:
        client.command(f'DROP DATABASE "{client.database}"')


def test_no_ingest_module_builds_line_protocol() -> None:
    """Escaping is the line-protocol builder's job: ingest imports none of its escape functions."""
    offenders = []
    for path in sorted((ROOT / "ingest").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lorong.storage.influx":
                offenders += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("escape")]
    assert offenders == []


@pytest.mark.parametrize(("topic", "device"), [
    ("lorong/v1/MKS-AIR-01/up", "MKS-AIR-01"),
    ("v3/lorong@ttn/devices/eui-24e124713b0000a9/up", "24E124713B0000A9"),
    ("v3/lorong@ttn/devices/bin-7/up", "bin-7"),
    ("application/7/device/70b3d57ed0000001/event/up", "70B3D57ED0000001"),
    ("airrohr/esp8266-1234", "esp8266-1234"),
    ("senml/MKS-AIR-02", "MKS-AIR-02"),
    ("somewhere/else", None),
    ("lorong/v1//up", None),
])
def test_device_in_topic(topic: str, device: str | None) -> None:
    assert device_in_topic(topic) == device


def test_a_rejection_carries_its_device_id() -> None:
    known = DeviceInfo(device_id="MKS-AIR-01", kind=DeviceKind.AIR, codec="", kecamatan="Tallo")
    pipeline = Pipeline({"MKS-AIR-01": known})
    rx = datetime.now(UTC)
    bad_json = pipeline.process(Message("lorong/v1/MKS-AIR-01/up", b"{", rx))
    assert bad_json.error is not None and bad_json.device_id == "MKS-AIR-01"
    unknown = pipeline.process(Message("v3/app@ttn/devices/eui-24e124713b0000a9/up", b"{", rx))
    assert unknown.error is not None and unknown.device_id == "24E124713B0000A9"


def test_reject_counts_use_the_dead_letter_device_id(sessions: Any) -> None:
    """Rows as the ingester writes them: the device id is a column, whatever the topic looks like
    (a topic of a layout added later, a ``$share`` bridge rewriting the prefix...)."""
    from ingest.deadletter import DeadLetter, DeadLetterStore

    now = datetime.now(UTC)
    DeadLetterStore(sessions).add_many([
        DeadLetter("bridge/site-1/raw", b"{", "bad_json", "x", now - timedelta(minutes=k), device_id="MKS-AIR-01")
        for k in range(3)])
    counts, newest = reject_counts(sessions(), now, 3600, {"MKS-AIR-01"})
    assert counts == {"MKS-AIR-01": {"bad_json": 3}}
    assert abs(newest["MKS-AIR-01"].replace(tzinfo=UTC) - now) < timedelta(seconds=1)
