"""``lorong ingest run --workers N``: the worker environments, and N real ingester processes in one
``$share`` group on real mosquitto and influxd, one of them killed with SIGKILL mid-stream and
restarted by the supervisor, everything stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.workers import shared_filter, worker_command, worker_env
from lorong.core.settings import IngestSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.ingest.test_delivery_support import (
    PacedPublisher,
    assert_stored_exactly,
    count_stored,
    ingester_env,
    register_fleet,
    scrape,
    uplinks,
)
from tests.support import wait_for


def test_shared_filter() -> None:
    assert shared_filter("lorong/v1/+/up", "g1") == "$share/g1/lorong/v1/+/up"
    assert shared_filter("$share/other/senml/+", "g1") == "$share/other/senml/+"
    for bad in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="share group"):
            shared_filter("x", bad)


def test_each_worker_is_a_distinct_member() -> None:
    settings = Settings(mqtt=MqttSettings(client_id="ing", topics=["lorong/v1/+/up", "senml/+"]),
                        ingest=IngestSettings(instance="mks", metrics_port=9464))
    envs = [worker_env(settings, i, "grp", {"PATH": "/bin"}, 3) for i in (1, 2, 3)]
    assert [e["LORONG_MQTT__CLIENT_ID"] for e in envs] == ["ing-1", "ing-2", "ing-3"]
    # time-less readings on milliseconds of each worker's own (issue 14 item 6)
    assert [(e["LORONG_INGEST__RX_SLOT"], e["LORONG_INGEST__RX_SLOTS"]) for e in envs] == [
        ("0", "3"), ("1", "3"), ("2", "3")]
    assert [e["LORONG_INGEST__INSTANCE"] for e in envs] == ["mks-1", "mks-2", "mks-3"]
    assert [e["LORONG_INGEST__METRICS_PORT"] for e in envs] == ["9464", "9465", "9466"]
    assert json.loads(envs[0]["LORONG_MQTT__TOPICS"]) == ["$share/grp/lorong/v1/+/up", "$share/grp/senml/+"]
    assert envs[2]["PATH"] == "/bin"
    off = Settings(ingest=IngestSettings(metrics_port=0))
    assert worker_env(off, 2, "g", {})["LORONG_INGEST__METRICS_PORT"] == "0"


def test_worker_command_keeps_global_options() -> None:
    cmd = worker_command(["--log-level", "WARNING", "ingest", "run", "--workers", "2"])
    assert cmd == [sys.executable, "-m", "lorong.cli", "--log-level", "WARNING", "ingest", "run"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only (stack config: persistence on, sized queue)."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


@pytest.mark.integration
def test_two_workers_share_the_stream_and_survive_a_sigkill(tmp_path: Path, db_url: str, sessions: Any,
                                                           influx: InfluxClient, broker: stack.Service) -> None:
    register_fleet(sessions)
    port = stack.free_port(2)  # the two workers' metrics ports
    env = {**os.environ, **ingester_env(tmp_path, db_url, broker.port, influx, "wrk", port)}
    exe = Path(sys.executable).with_name("lorong")
    with open(tmp_path / "workers.log", "wb") as log:
        proc = subprocess.Popen([str(exe), "ingest", "run", "--workers", "2", "--group", "wrk"], env=env,
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sent = uplinks(3000)
    pub = PacedPublisher(broker.port, sent, chunk=100, pause_s=0.01, client_id="wrk-pub")
    try:
        wait_for(lambda: all(scrape(p).get("lorong_ingest_mqtt_up") == 1 for p in (port, port + 1)), 60,
                 "both workers subscribed")
        pub.start()
        wait_for(lambda: all(scrape(p).get("lorong_ingest_messages_received_total", 0) >= 300
                             for p in (port, port + 1)), 60, "both workers take a share", every_s=0.05)
        victim = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        os.kill(victim, signal.SIGKILL)
        pub.finish()
        wait_for(lambda: count_stored(influx) >= 3000, 90, "everything stored", every_s=0.5)
        live = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(live) == 2 and str(victim) not in live  # the killed worker was started again
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, (tmp_path / "workers.log").read_text()[-3000:]
    assert_stored_exactly(influx, sent)
