"""Fault tests on real mosquitto and influxd: every published QoS 1 reading ends up in InfluxDB
exactly once (stored == published, no point twice) when

- InfluxDB is down for 60 s mid-stream,
- the broker restarts mid-stream (persistence on; the publisher resends what was unacked),
- the ingester process is killed with SIGKILL mid-stream and started again,
- every message is delivered twice (and LoRaWAN frames come through two network servers),
- two ingesters split the stream through one ``$share`` group.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.registry import DeviceIn, add_device
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from tests.conftest import DATA
from tests.ingest.test_delivery_support import (
    PacedPublisher,
    assert_stored_exactly,
    count_stored,
    ingester_env,
    register_fleet,
    scrape,
    settings_for,
    start_ingester,
    uplinks,
)
from tests.support import kill_if_running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only (stack config: persistence on, sized queue)."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


def test_influxdb_down_for_a_minute(tmp_path: Path, db_url: str, sessions: Any, broker: stack.Service) -> None:
    """The ingester keeps taking (and acking) messages into its spool while InfluxDB is stopped for
    60 s, dead-letters nothing, and writes everything once InfluxDB is back."""
    register_fleet(sessions)
    port = stack.free_port()
    influxd = stack.start_influxd(tmp_path / "influxd", port)
    influx = InfluxClient(f"http://127.0.0.1:{port}", "faults", timeout_s=2)
    ing = start_ingester(settings_for(tmp_path, db_url, broker.port, influx, "flt-influx"), sessions, influx)
    sent = uplinks(3000)
    try:
        before = PacedPublisher(broker.port, sent[:1000], chunk=100, pause_s=0.01, client_id="flt-influx-a")
        before.start()
        wait_for(lambda: before.done >= 500, 30, "first half of the first third published")
        influxd.stop()
        down_at = time.monotonic()
        before.finish()
        during = PacedPublisher(broker.port, sent[1000:2000], chunk=50, pause_s=2.5, client_id="flt-influx-b")
        during.start()  # 20 chunks 2.5 s apart: spread over the outage
        during.finish(timeout_s=OUTAGE_S + 30)
        wait_for(lambda: ing.stats.received == 2000 and not ing._acks, 10, "outage messages received and acked")
        assert not ing.writer.up
        assert ing.spool.depth() >= 1000
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert time.monotonic() - down_at >= OUTAGE_S
        influxd = stack.start_influxd(tmp_path / "influxd", port)
        after = PacedPublisher(broker.port, sent[2000:], chunk=100, pause_s=0.01, client_id="flt-influx-c")
        after.start()
        after.finish()
        wait_for(lambda: count_stored(influx) >= 3000, 40, "everything stored after the outage", every_s=0.5)
        ing.stop()
        assert_stored_exactly(influx, sent)
    finally:
        ing.stop()
        influxd.stop()
    assert DeadLetterStore(sessions).count() == 0
    assert ing.stats.refused_points == 0


def test_broker_restart_mid_stream(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient) -> None:
    """Mosquitto stops (SIGTERM, it saves its state) and starts again on the same port and data
    directory while readings flow; the publisher and the ingester reconnect on their own."""
    register_fleet(sessions)
    workdir, port = tmp_path / "mq", stack.free_port()
    mq = stack.start_mosquitto(workdir, port)
    ing = start_ingester(settings_for(tmp_path, db_url, port, influx, "flt-broker"), sessions, influx)
    sent = uplinks(4000)
    pub = PacedPublisher(port, sent, chunk=50, pause_s=0.01, client_id="flt-broker-pub")
    try:
        pub.start()
        wait_for(lambda: pub.done >= 1500, 60, "1500 published")
        mq.stop()
        stopped_at = pub.done
        time.sleep(2.0)
        mq = stack.start_mosquitto(workdir, port)
        pub.finish()
        assert stopped_at < len(sent), "the restart must happen mid-stream"
        assert ing.source.generation >= 3  # connected, lost, connected again
        wait_for(lambda: count_stored(influx) >= 4000, 60, "everything stored", every_s=0.5)
    finally:
        ing.stop()
        mq.stop()
    assert_stored_exactly(influx, sent)


def _spawn(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``lorong ingest run`` as a child process, configured by ``env``."""
    exe = Path(sys.executable).with_name("lorong")
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([str(exe), "ingest", "run"], env={**os.environ, **env}, cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    return proc


def test_ingester_sigkill_mid_stream(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                     broker: stack.Service) -> None:
    """The ingester process dies with SIGKILL while readings flow and is started again: its
    persistent MQTT session (broker side) and its spool (disk) deliver everything."""
    register_fleet(sessions)
    metrics_port = stack.free_port()
    env = ingester_env(tmp_path, db_url, broker.port, influx, "flt-kill", metrics_port)
    log = tmp_path / "ingester.log"
    proc = _spawn(env, log, tmp_path)
    sent = uplinks(4000)
    pub = PacedPublisher(broker.port, sent, chunk=50, pause_s=0.01, client_id="flt-kill-pub")
    try:
        wait_for(lambda: scrape(metrics_port).get("lorong_ingest_mqtt_up") == 1, 30, "child subscribed",
                 every_s=0.2)
        pub.start()
        wait_for(lambda: scrape(metrics_port).get("lorong_ingest_messages_received_total", 0) >= 1200, 60,
                 "child received 1200", every_s=0.1)
        proc.kill()
        proc.wait(timeout=10)
        assert proc.returncode == -9
        killed_at = pub.done
        time.sleep(1.0)
        proc = _spawn(env, log, tmp_path)
        pub.finish()
        assert killed_at < len(sent), "the kill must happen mid-stream"
        wait_for(lambda: count_stored(influx) >= 4000, 60, "everything stored", every_s=0.5)
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        kill_if_running(proc)
    assert_stored_exactly(influx, sent)
    assert DeadLetterStore(sessions).count() == 0, log.read_text()[-3000:]


def _ttn(dev_eui: str, fcnt: int, payload_hex: str, received_ms: int, gateway: str, rssi: int) -> bytes:
    """A The Things Stack v3 uplink carrying raw bytes, as one network server would publish it."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(received_ms // 1000)) + f".{received_ms % 1000:03d}Z"
    return json.dumps({
        "end_device_ids": {"device_id": dev_eui.lower(), "dev_eui": dev_eui,
                           "application_ids": {"application_id": "faults"}},
        "received_at": when,
        "uplink_message": {"f_port": 85, "f_cnt": fcnt, "received_at": when,
                           "frm_payload": base64.b64encode(bytes.fromhex(payload_hex)).decode(),
                           "rx_metadata": [{"gateway_ids": {"gateway_id": gateway}, "rssi": rssi}]},
    }).encode()


def test_every_message_twice(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                             broker: stack.Service) -> None:
    """Each native uplink arrives twice (with and without ``seq``), each LoRaWAN frame through two
    network servers (other gateway, RSSI and receive time): every reading is stored once."""
    register_fleet(sessions)
    em310 = next(v for v in json.loads((DATA / "lorawan_vectors.json").read_text()) if v["device"] == "EM310-UDL")
    bins = ("24E124713B00F001", "24E124713B00F002")
    with sessions.begin() as s:
        for eui in bins:
            add_device(s, DeviceIn(id=eui, kind="bin", codec="milesight-em310-udl", kecamatan="Tallo",
                                   depth_mm=2500, blind_zone_mm=200))
    topics = ["lorong/v1/+/up", "v3/+/devices/+/up"]
    ing = start_ingester(settings_for(tmp_path, db_url, broker.port, influx, "flt-twice", topics), sessions, influx)
    with_seq, without_seq = uplinks(1000), uplinks(200, start=1000, with_seq=False)
    base_ms = (int(time.time()) - 3600) * 1000
    hexa = em310["payload_hex"]

    def lora(eui: str, f: int, late_ms: int, gateway: str, rssi: int) -> tuple[str, bytes]:
        topic = f"v3/faults@ttn/devices/{eui.lower()}/up"
        return topic, _ttn(eui, f, hexa, base_ms + f * 1000 + late_ms, gateway, rssi)

    lora_first = [lora(eui, f, 0, "gw-a", -100) for eui in bins for f in range(20)]
    lora_copy = [lora(eui, f, 350, "gw-b", -87) for eui in bins for f in range(20)]  # other NS, 350 ms later
    once = [(u.topic, u.payload) for u in with_seq + without_seq]
    pub = Publisher("127.0.0.1", broker.port, client_id="flt-twice-pub")
    try:
        pub.publish_many(once + lora_first)
        pub.publish_many(once + lora_copy)
        wait_for(lambda: ing.stats.received == 2 * (1200 + 40), 30, "all copies received")
        wait_for(lambda: ing.spool.depth() == 0 and not ing._acks, 30, "spool drained")
    finally:
        ing.stop()
        pub.close()
    assert_stored_exactly(influx, with_seq + without_seq)
    assert ing.stats.duplicates == 1000 + 40  # seq / frame counter seen; the 200 without seq overwrite
    lora = influx.query('SELECT "distance" FROM "waste_container" WHERE "device_id" =~ /^24E124713B00F0/ '
                        'GROUP BY "device_id"')
    got = {(s.tags["device_id"], int(t)) for s in lora for t, _ in s.values}
    assert sum(len(s.values) for s in lora) == len(got) == 40
    assert got == {(eui, base_ms + f * 1000) for eui in bins for f in range(20)}
    assert {v for s in lora for _, v in s.values} == {float(em310["expected"]["distance"])}


def test_two_ingesters_share_one_stream(tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient,
                                        broker: stack.Service) -> None:
    """Two ingesters (own client ids, own spools) in one ``$share`` group: each message goes to one
    of them, both do work, everything is stored once."""
    register_fleet(sessions)
    topics = ["$share/lorong/lorong/v1/+/up"]
    ings = [start_ingester(settings_for(tmp_path, db_url, broker.port, influx, f"flt-share-{i}", topics),
                           sessions, influx) for i in (1, 2)]
    sent = uplinks(4000)
    pub = PacedPublisher(broker.port, sent, chunk=100, pause_s=0.005, client_id="flt-share-pub")
    try:
        pub.start()
        pub.finish()
        wait_for(lambda: count_stored(influx) >= 4000, 60, "everything stored", every_s=0.5)
    finally:
        for ing in ings:
            ing.stop()
    received = [ing.stats.received for ing in ings]
    assert sum(received) == 4000
    assert min(received) >= 400, received
    assert_stored_exactly(influx, sent)
