"""Fault tests on a three-node NATS cluster (real nats-server processes on free loopback ports, real
influxd): QoS 1 uplinks with sequence numbers are published over MQTT 3.1.1 to the nodes while

- the node the publisher and the ingester use is killed (SIGKILL) mid-stream,
- the leader of the uplink stream is killed mid-stream,
- a killed node is started again and catches up, then another node is killed,
- one of two ingesters sharing the durable consumer is killed (SIGKILL) and started again;

and in every case each published reading is stored exactly once in InfluxDB (stored == published,
no point twice). The publisher moves to the next node when its node stops acknowledging.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.publisher import FailoverPublisher
from ingest.deadletter import DeadLetterStore
from ingest.nats_source import NatsSource
from ingest.service import Ingester
from lorong.core.settings import InfluxSettings, IngestSettings, MqttSettings, NatsSettings, Settings
from lorong.storage import cluster, stack
from lorong.storage.influx import InfluxClient
from tests.ingest.test_delivery_support import (
    TOPICS,
    Sent,
    assert_stored_exactly,
    count_stored,
    register_fleet,
    start_ingester,
    uplinks,
)
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 3000
NATS = NatsSettings(ack_wait_s=3.0, fetch_batch=500)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[cluster.NatsNode]]:
    """Three started nodes on free ports, the uplink stream replicated on all three, the consumer made.

    A port found free can be taken by another test process before the node binds it: then the
    nodes start again on new ports (at most three tries)."""
    for attempt in range(3):
        ports = [cluster.NodePorts(*(stack.free_port() for _ in range(4))) for _ in range(3)]
        members = cluster.make_cluster(tmp_path / f"nats{attempt}", NATS, ports[0].mqtt, 3, ports)
        try:
            cluster.start_cluster(members)
            break
        except TimeoutError as e:
            for n in members:
                n.kill()
            if "address already in use" not in str(e) or attempt == 2:
                raise
    try:
        assert cluster.ensure_uplinks([n.url for n in members], ports[0].mqtt, NATS, TOPICS) == 3
        yield members
    finally:
        for n in members:
            n.kill()


def nats_settings(tmp_path: Path, db_url: str, influx: InfluxClient, servers: Sequence[str], name: str) -> Settings:
    """Settings of one ingester reading the cluster (servers in the order given: it uses the first)."""
    return Settings.model_validate({
        "var_dir": tmp_path / "var", "database_url": db_url,
        "mqtt": MqttSettings(client_id=name, topics=TOPICS),
        "nats": NATS.model_copy(update={"servers": list(servers)}),
        "influx": InfluxSettings(url=influx.url, database=influx.database),
        "ingest": IngestSettings(spool_dir=tmp_path / "spool", flush_interval_s=0.05, source="nats", instance=name),
    })


class ClusterPublisher(threading.Thread):
    """Publishes ``sent`` in chunks of 50 through a :class:`FailoverPublisher`; ``done`` counts acknowledged."""

    def __init__(self, nodes: Sequence[cluster.NatsNode], sent: Sequence[Sent], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pub = FailoverPublisher([("127.0.0.1", n.ports.mqtt) for n in nodes], client_id=name, ack_timeout_s=3)
        self.sent, self.done, self.error = list(sent), 0, None

    def run(self) -> None:
        try:
            for i in range(0, len(self.sent), 50):
                part = self.sent[i:i + 50]
                self.pub.publish_many([(u.topic, u.payload) for u in part], timeout_s=40)
                self.done += len(part)
                time.sleep(0.01)
        except BaseException as exc:
            self.error = exc  # type: ignore[assignment]

    def finish(self, timeout_s: float = 60.0) -> None:
        """Wait for the last PUBACK, disconnect; fail on a publish error."""
        self.join(timeout_s)
        self.pub.close()
        assert not self.is_alive(), "publisher did not finish"
        assert self.error is None, f"publisher failed: {self.error!r}"
        assert self.done == len(self.sent)


def by_name(nodes: Sequence[cluster.NatsNode], name: str | None) -> cluster.NatsNode:
    """The node called ``name``."""
    return next(n for n in nodes if n.name == name)


def leader(nodes: Sequence[cluster.NatsNode]) -> cluster.NatsNode:
    """The node leading the uplink stream (waits for one)."""
    urls = [n.url for n in nodes if n.running()]
    found: list[str] = []
    wait_for(lambda: bool(found.append(cluster.stream_leader(urls) or "") or found[-1]), 15, "a stream leader")
    return by_name(nodes, found[-1])


def all_current(nodes: Sequence[cluster.NatsNode]) -> bool:
    """True when the stream has a leader and both followers are current (caught up)."""
    async def check() -> bool:
        import nats

        nc = await nats.connect([n.url for n in nodes if n.running()], connect_timeout=2, max_reconnect_attempts=1)
        try:
            info = await nc.jetstream(timeout=3).stream_info(cluster.UPLINK_STREAM)
            reps = info.cluster.replicas or [] if info.cluster else []
            return bool(info.cluster and info.cluster.leader) and len(reps) == 2 and all(r.current for r in reps)
        finally:
            await nc.close()
    try:
        return asyncio.run(check())
    except Exception:
        return False


def test_kill_the_node_publisher_and_ingester_use(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                                  nodes: list[cluster.NatsNode]) -> None:
    """SIGKILL of n1, the node both the publisher and the ingester are connected to: both move on to
    another node; what n1 acknowledged was already on the other two."""
    register_fleet(sessions)
    ing = start_ingester(nats_settings(tmp_path, db_url, influx, [n.url for n in nodes], "cl-node"), sessions, influx)
    sent = uplinks(N)
    pub = ClusterPublisher(nodes, sent, "cl-node-pub")
    try:
        pub.start()
        wait_for(lambda: pub.done >= 1000 and ing.stats.received >= 500, 30, "1000 published, 500 received")
        nodes[0].kill()
        killed_at = pub.done
        pub.finish()
        assert killed_at < N, "the kill must happen mid-stream"
        assert pub.pub.switches >= 1, "the publisher had to move to another node"
        wait_for(lambda: count_stored(influx) >= N, 40, "everything stored", every_s=0.25)
    finally:
        ing.stop()
    assert_stored_exactly(influx, sent)
    assert DeadLetterStore(sessions).count() == 0


def test_kill_the_stream_leader(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                nodes: list[cluster.NatsNode]) -> None:
    """SIGKILL of the uplink stream's Raft leader while uplinks flow through a follower: the other two
    elect a new leader; the node answers PUBACK only once an uplink is stored, so none is lost."""
    register_fleet(sessions)
    lead = leader(nodes)
    others = [n for n in nodes if n is not lead]
    ing = start_ingester(nats_settings(tmp_path, db_url, influx, [n.url for n in others], "cl-lead"), sessions, influx)
    sent = uplinks(N)
    pub = ClusterPublisher(others, sent, "cl-lead-pub")
    try:
        pub.start()
        wait_for(lambda: pub.done >= 1000, 30, "1000 published")
        lead.kill()
        killed_at = pub.done
        pub.finish()
        assert killed_at < N, "the kill must happen mid-stream"
        assert leader(nodes).name != lead.name
        wait_for(lambda: count_stored(influx) >= N, 40, "everything stored", every_s=0.25)
    finally:
        ing.stop()
    assert_stored_exactly(influx, sent)


def test_restart_the_killed_node(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                 nodes: list[cluster.NatsNode]) -> None:
    """A follower of the stream is killed mid-stream and started again on its data directory while
    uplinks flow; once it has caught up, the other follower is killed: the leader can only go on
    storing (and the nodes acknowledging) with the restarted node as the second of its quorum."""
    register_fleet(sessions)
    lead = leader(nodes)
    first, second = (n for n in nodes if n is not lead)
    ing = start_ingester(nats_settings(tmp_path, db_url, influx, [lead.url], "cl-restart"), sessions, influx)
    sent = uplinks(N)
    pub = ClusterPublisher([lead], sent, "cl-restart-pub")
    try:
        pub.start()
        wait_for(lambda: pub.done >= 600, 30, "600 published")
        first.kill()
        wait_for(lambda: pub.done >= 1200, 30, f"1200 published with {first.name} down")
        first.start()
        wait_for(lambda: all_current(nodes), 30, f"{first.name} caught up", every_s=0.2)
        assert pub.done < N, f"{first.name} must come back mid-stream"
        second.kill()
        killed_at = pub.done
        pub.finish()
        assert killed_at < N, f"{second.name} must be killed mid-stream"
        assert leader(nodes).name == lead.name
        wait_for(lambda: count_stored(influx) >= N, 40, "everything stored", every_s=0.25)
    finally:
        ing.stop()
    assert_stored_exactly(influx, sent)


def _spawn_ingester(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("lorong")
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([str(exe), "ingest", "run"], env={**os.environ, **env}, cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    return proc


def test_kill_one_of_two_ingesters(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                   nodes: list[cluster.NatsNode]) -> None:
    """Two ingesters share the durable consumer: an in-process one and a ``lorong ingest run`` process
    that is killed with SIGKILL mid-stream and started again. What it took and did not acknowledge
    goes to the other one after the ack wait (3 s here); what it acknowledged waits in its spool until
    it runs again; everything is stored once."""
    register_fleet(sessions)
    urls = [n.url for n in nodes]
    stayer = start_ingester(nats_settings(tmp_path, db_url, influx, urls, "cl-two-a"), sessions, influx)
    env = {
        "LORONG_VAR_DIR": str(tmp_path / "var"), "LORONG_DATABASE_URL": db_url,
        "LORONG_MQTT__CLIENT_ID": "cl-two-b", "LORONG_MQTT__TOPICS": json.dumps(TOPICS),
        "LORONG_INGEST__SOURCE": "nats", "LORONG_INGEST__INSTANCE": "cl-two-b",
        "LORONG_INGEST__SPOOL_DIR": str(tmp_path / "spool"), "LORONG_INGEST__FLUSH_INTERVAL_S": "0.05",
        "LORONG_NATS__SERVERS": json.dumps(urls[1:] + urls[:1]), "LORONG_NATS__ACK_WAIT_S": "3",
        "LORONG_NATS__FETCH_BATCH": str(NATS.fetch_batch),
        "LORONG_INFLUX__URL": influx.url, "LORONG_INFLUX__DATABASE": influx.database,
    }
    log = tmp_path / "ingester.log"
    victim = _spawn_ingester(env, log, tmp_path)
    sent = uplinks(N)
    pub = ClusterPublisher(nodes, sent, "cl-two-pub")
    try:
        wait_for(lambda: "consumer lorong-ingest" in log.read_text(errors="replace"), 30, "child bound", every_s=0.2)
        pub.start()
        wait_for(lambda: pub.done >= 1500, 30, "1500 published")
        victim.kill()
        assert victim.wait(timeout=10) == -9
        killed_at = pub.done
        pub.finish()
        assert killed_at < N, "the kill must happen mid-stream"
        # what the killed one had acknowledged is in its spool file: written when it starts again
        # (as a supervisor restarts it); what it had not is the other's after the ack wait
        victim = _spawn_ingester(env, log, tmp_path)
        wait_for(lambda: count_stored(influx) >= N, 40, "everything stored", every_s=0.25)
        # bound again: its signal handlers are set (a SIGTERM before that ended it with -15 under load)
        wait_for(lambda: log.read_text(errors="replace").count("ingesting from NATS") >= 2, 30,
                 "child running again", every_s=0.2)
        victim.terminate()
        assert victim.wait(timeout=30) == 0
    finally:
        stayer.stop()
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)
    assert stayer.stats.received < N, stayer.stats.received  # the killed one had stored and acked a share
    assert_stored_exactly(influx, sent)
    assert DeadLetterStore(sessions).count() == 0, log.read_text()[-3000:]


def test_topics_and_subjects() -> None:
    """MQTT topic filters become the stream's subjects and subjects become topics again, as the
    NATS server maps them (README-MQTT.md, "Subject Wildcards")."""
    assert cluster.stream_subjects(["lorong/v1/+/up", "$share/g/senml/+", "a/#", "lorong/v1/+/up"]) == [
        "lorong.v1.*.up", "senml.*", "a", "a.>"]
    assert cluster.stream_subjects(["v3/app.x@ttn/devices/+/up"]) == ["v3.app//x@ttn.devices.*.up"]
    assert cluster.mqtt_topic("lorong.v1.DLV-01.up") == "lorong/v1/DLV-01/up"
    assert cluster.mqtt_topic("v3.app//x@ttn.devices.d1.up") == "v3/app.x@ttn/devices/d1/up"
    assert cluster.mqtt_topic("/.a") == "/a"
    assert cluster.consumer_subjects(["airrohr/+"]) == ["$MQTT.msgs.airrohr.*"]


def test_source_setting_chooses_nats(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient) -> None:
    """``ingest.source = nats`` gives the ingester a :class:`NatsSource` (the default stays MQTT)."""
    from devices.registry import RegistryLookup

    settings = nats_settings(tmp_path, db_url, influx, ["nats://127.0.0.1:1"], "cl-choose")
    ing = Ingester(settings, RegistryLookup(sessions), DeadLetterStore(sessions), influx)
    assert isinstance(ing.source, NatsSource)
    assert ing.source.subjects == ["$MQTT.msgs.lorong.v1.*.up"]
    ing.spool.close()
    assert Settings().ingest.source == "mqtt"
