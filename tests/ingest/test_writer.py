"""The spool writer against a real influxd: missing database, poison points, outages, a failing
dead-letter store."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ingest.deadletter import DeadLetter, DeadLetterStore
from ingest.writer import SpoolWriter
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool
from tests.support import wait_for

pytestmark = pytest.mark.integration

T0_MS = (int(time.time()) - 3600) * 1000  # an hour ago: inside any retention policy


def points(n: int, start: int = 0, field: str = "v") -> list[str]:
    """``n`` points of measurement ``m``, one per ms, float field ``field`` = index."""
    return [f"m,device_id=D {field}={float(i)} {T0_MS + i}" for i in range(start, start + n)]


def count(client: InfluxClient, field: str = "v") -> int:
    rows = client.records(f'SELECT count("{field}") FROM "m"')
    return int(rows[0]["count"]) if rows else 0


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool.sqlite")
    yield s
    s.close()


@pytest.fixture
def dead(sessions: Any) -> DeadLetterStore:
    return DeadLetterStore(sessions)


def test_missing_database_is_created_not_dead_lettered(influxd: stack.Service, spool: Spool,
                                                       dead: DeadLetterStore) -> None:
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", f"w_missing_{time.monotonic_ns()}")
    written: list[int] = []
    writer = SpoolWriter(spool, client, dead.add_many, batch_size=500, idle_s=0.05,
                         on_written=lambda n, _s: written.append(n), retention="30d")
    spool.append(points(1200))
    writer.start()
    try:
        wait_for(lambda: spool.depth() == 0, 20, "spool drained")
    finally:
        writer.stop()
    assert count(client) == 1200
    assert sum(written) == 1200
    assert dead.count() == 0
    rp = client.records("SHOW RETENTION POLICIES")
    assert [(r["name"], r["duration"], r["default"]) for r in rp] == [("autogen", "720h0m0s", True)]
    client.command(f'DROP DATABASE "{client.database}"')
    client.close()


def test_poison_points_are_isolated_and_the_rest_written(influx: InfluxClient, spool: Spool,
                                                         dead: DeadLetterStore) -> None:
    influx.write_lines([f"m,device_id=D s=\"text\" {T0_MS - 1}"])  # field s is a string from now on
    bad = ["m,device_id=D s=1.5 " + str(T0_MS + 5_000),  # field type conflict (400)
           "this is not line protocol",                     # unparsable (400)
           "m,device_id=D v=1.0 1 2 3"]                     # bad timestamp (400)
    good = points(3000)
    batch = good[:1000] + bad[:1] + good[1000:2500] + bad[1:] + good[2500:]
    spool.append(batch)
    refused: list[int] = []
    writer = SpoolWriter(spool, influx, dead.add_many, batch_size=5000, idle_s=0.05,
                         on_refused=refused.append)
    writer.start()
    try:
        wait_for(lambda: spool.depth() == 0, 30, "spool drained")
    finally:
        writer.stop()
    assert count(influx) == 3000
    letters = dead.list(limit=10)
    assert sorted(d.payload.decode() for d in letters) == sorted(bad)
    assert {d.reason for d in letters} == {"store_rejected"}
    assert all("HTTP 400" in d.detail for d in letters)
    assert refused == [3]


def test_outage_keeps_points_then_drains(tmp_path: Path, spool: Spool, dead: DeadLetterStore) -> None:
    """InfluxDB is not there at first: nothing leaves the spool, nothing is dead-lettered; once it
    starts (and its database does not exist yet) everything arrives."""
    port = stack.free_port()
    client = InfluxClient(f"http://127.0.0.1:{port}", "outage", timeout_s=2)
    writer = SpoolWriter(spool, client, dead.add_many, batch_size=1000, idle_s=0.05)
    spool.append(points(2500))
    writer.start()
    svc = None
    try:
        wait_for(lambda: not writer.up, 10, "writer noticed the outage")
        time.sleep(1.0)
        assert spool.depth() == 2500
        svc = stack.start_influxd(tmp_path / "influxd", port)
        wait_for(lambda: spool.depth() == 0, 30, "spool drained after InfluxDB came up")
        assert writer.up
        assert count(client) == 2500
        assert dead.count() == 0
    finally:
        writer.stop()
        client.close()
        if svc is not None:
            svc.stop()


def test_failing_dead_letter_store_keeps_the_batch(influx: InfluxClient, spool: Spool, sessions: Any,
                                                   dead: DeadLetterStore) -> None:
    """A poison point whose dead letter cannot be stored keeps its whole batch in the spool; when
    the store is back the point is dead-lettered once and the rest written."""
    influx.write_lines([f"m,device_id=D s=\"text\" {T0_MS - 1}"])
    calls: list[int] = []

    def sink(letters: Sequence[DeadLetter]) -> None:
        calls.append(len(letters))
        dead.add_many(letters)

    with sessions.begin() as s:
        s.execute(text("ALTER TABLE dead_letters RENAME TO dead_letters_away"))
    spool.append([*points(100), f"m,device_id=D s=2.0 {T0_MS + 500}"])
    writer = SpoolWriter(spool, influx, sink, batch_size=5000, idle_s=0.05)
    writer.start()
    try:
        wait_for(lambda: len(calls) >= 2, 10, "dead-letter attempts")
        assert spool.depth() == 101
        assert not writer.up
        with sessions.begin() as s:
            s.execute(text("ALTER TABLE dead_letters_away RENAME TO dead_letters"))
        wait_for(lambda: spool.depth() == 0, 20, "spool drained")
    finally:
        writer.stop()
    assert count(influx) == 100
    assert [d.payload.decode() for d in dead.list()] == [f"m,device_id=D s=2.0 {T0_MS + 500}"]
