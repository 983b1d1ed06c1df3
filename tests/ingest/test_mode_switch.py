"""Switching between one ingester and ``--workers N`` on real mosquitto and influxd: every time-less
reading is stored once, none lost, none twice (issue #14 item 6).

A reading without a device time is stored at its receive time, so a copy delivered again later is a
second point. Each mode used to keep its persistent sessions on the broker while the other ran; those
sessions kept collecting, and on the way back their queues were stored again. The readings here carry
no ``time``; each has its own ``pm25`` value (its sequence number), which is what is counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.registry import RegistryLookup
from firmware_sim.publisher import Publisher
from ingest.deadletter import DeadLetterStore
from ingest.handover import RetiringIngester, hand_over, handover_topic, other_mode_ids
from ingest.service import Ingester
from ingest.workers import worker_env, worker_mqtt
from lorong.cli import error_line
from lorong.core.errors import HandoverError
from lorong.core.settings import IngestSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.db import migrate
from lorong.storage.influx import InfluxClient
from lorong.storage.spool import Spool, spool_in_use
from tests.ingest.test_delivery_support import (
    FLEET,
    PacedPublisher,
    Sent,
    ingester_env,
    register_fleet,
    scrape,
    settings_for,
    start_ingester,
)
from tests.support import wait_for


def timeless(start: int, n: int) -> list[Sent]:
    """Uplinks ``start`` .. ``start + n - 1`` without a device time: message k comes from
    ``FLEET[k % 8]`` with ``seq`` k, pm25 ``k % 1000`` and pm10 ``k // 1000`` (k < 1,000,000; both
    within their valid range), ``ts_ms`` 0 (the receive time is not known)."""
    out = []
    for k in range(start, start + n):
        device = FLEET[k % len(FLEET)]
        body = {"device_id": device, "seq": k, "metrics": {"pm25": {"value": float(k % 1000), "unit": "ug/m3"},
                                                           "pm10": {"value": float(k // 1000), "unit": "ug/m3"}}}
        out.append(Sent(f"lorong/v1/{device}/up", json.dumps(body).encode(), device, 0))
    return out


def stored_values(influx: InfluxClient) -> Counter[int]:
    """How often each sequence number (pm10 * 1000 + pm25) of the test fleet is stored."""
    series = influx.query('SELECT "pm25", "pm10" FROM "air_quality" WHERE "device_id" =~ /^DLV-/ '
                          'GROUP BY "device_id"')
    return Counter(int(row[2]) * 1000 + int(row[1]) for s in series for row in s.values)


def assert_each_once(influx: InfluxClient, sent: Sequence[Sent], when: str) -> None:
    """Every sequence number of ``sent`` stored exactly once, and nothing else."""
    got = stored_values(influx)
    want = {int(json.loads(u.payload)["seq"]) for u in sent}
    twice = sorted(k for k, n in got.items() if n > 1)
    missing, extra = sorted(want - set(got)), sorted(set(got) - want)
    assert not twice and not missing and not extra, (
        f"{when}: {len(twice)} stored twice (e.g. {twice[:5]}), {len(missing)} missing (e.g. {missing[:5]}), "
        f"{len(extra)} unexpected")


def publish(port: int, sent: Sequence[Sent]) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACKs."""
    pub = Publisher("127.0.0.1", port, client_id="mode-pub")
    try:
        pub.publish_many([(u.topic, u.payload) for u in sent], timeout_s=30)
    finally:
        pub.close()


def session_exists(port: int, client_id: str) -> bool:
    """Whether the broker holds a session for ``client_id`` (CONNACK Session Present). The probe
    connects with Session Expiry 0, so it ends that session: call it last."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    present: list[bool] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: present.append(bool(flags.session_present))
    client.connect("127.0.0.1", port, clean_start=False)
    client.loop_start()
    try:
        wait_for(lambda: bool(present), 10, f"CONNACK for {client_id}")
    finally:
        client.disconnect()
        client.loop_stop()
    return present[0]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only (stack config: persistence on, sized queue)."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


class Mode:
    """``lorong ingest run`` (``workers`` 1) or ``lorong ingest run --workers N`` as a subprocess."""

    def __init__(self, tmp_path: Path, env: dict[str, str], metrics_port: int, workers: int) -> None:
        self.tmp_path, self.env, self.port, self.workers = tmp_path, env, metrics_port, workers
        self.log = tmp_path / f"run-{workers}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("lorong")
        extra = ["--workers", str(self.workers), "--group", "mode"] if self.workers > 1 else []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(exe), "ingest", "run", *extra], env=self.env, cwd=self.tmp_path,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_subscribed(self, timeout_s: float = 60) -> None:
        ports = range(self.port, self.port + self.workers)
        wait_for(lambda: all(scrape(p).get("lorong_ingest_mqtt_up") == 1 for p in ports), timeout_s,
                 f"{self.workers} ingester(s) subscribed")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert code == 0, self.log.read_text()[-3000:]


def settle(influx: InfluxClient, n: int, timeout_s: float = 20.0) -> None:
    """Wait until at least ``n`` points are stored (or ``timeout_s`` passed: the exact check that
    follows says what is wrong)."""
    deadline = time.monotonic() + timeout_s
    while sum(stored_values(influx).values()) < n and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.integration
def test_single_workers_single_stores_each_timeless_reading_once(tmp_path: Path, db_url: str, sessions: Any,
                                                                 influx: InfluxClient, broker: stack.Service
                                                                 ) -> None:
    """single -> gap -> --workers 2 -> gap -> single, publishing while each mode runs, while it starts and
    while nothing runs: stored == published after each mode, each reading once."""
    register_fleet(sessions)
    port = stack.free_port(2)  # the two workers' metrics ports
    env = {**os.environ, **ingester_env(tmp_path, db_url, broker.port, influx, "mode", port)}
    single, workers = Mode(tmp_path, env, port, 1), Mode(tmp_path, env, port, 2)
    batch = [timeless(i * 100, 100) for i in range(7)]

    def run(mode: Mode, starting: list[Sent], running: list[Sent], upto: int, client_id: str) -> None:
        pub = PacedPublisher(broker.port, starting, chunk=5, pause_s=0.05, client_id=client_id)
        pub.start()  # publishing while the mode starts
        mode.start()
        mode.wait_subscribed()
        pub.finish()
        publish(broker.port, running)  # while it runs: queued for the other mode's sessions too, if any
        settle(influx, upto * 100)
        mode.stop()
        assert_each_once(influx, [u for b in batch[:upto] for u in b], f"after {mode.workers} ingester(s)")

    run(single, [], batch[0], 1, "mode-pub-0")  # the single mode's session exists from its first start on
    publish(broker.port, batch[1])  # nothing runs
    run(workers, batch[2], batch[3], 4, "mode-pub-1")
    publish(broker.port, batch[4])  # nothing runs
    run(single, batch[5], batch[6], 7, "mode-pub-2")
    logs = single.log.read_text() + workers.log.read_text()
    assert logs.count("taking over from the sessions of mode\n") == 1, logs[-3000:]
    assert logs.count("taking over from the sessions of mode-1, mode-2\n") == 1, logs[-3000:]
    assert "sessions of both modes" not in logs  # each switch ended the old sessions


@pytest.mark.integration
def test_handover_while_publishing_loses_nothing_and_stores_nothing_twice(tmp_path: Path, db_url: str,
                                                                          sessions: Any, influx: InfluxClient,
                                                                          broker: stack.Service) -> None:
    """The hand-over itself, in process, with a publisher running all along: two workers ->
    one ingester -> two workers, each switch made while readings keep arriving, so some are
    published while the marker is on its way."""
    register_fleet(sessions)
    base = settings_for(tmp_path, db_url, broker.port, influx, "hand")
    one = [base.mqtt]
    two = [worker_mqtt(base, i, "g") for i in (1, 2)]

    def retiring(settings: Settings, topic: str) -> RetiringIngester:
        return RetiringIngester(settings, RegistryLookup(sessions), DeadLetterStore(sessions),
                                InfluxClient(influx.url, influx.database), topic)

    def start(mqtts: list[MqttSettings]) -> list[Ingester]:
        return [start_ingester(base.model_copy(update={"mqtt": m}), sessions, influx) for m in mqtts]

    sent = timeless(0, 20_000)
    pub = PacedPublisher(broker.port, sent, chunk=100, pause_s=0.01, client_id="hand-pub")
    running = start(two)
    pub.start()
    for target, at in ((one, 5000), (two, 12_000)):
        wait_for(lambda at=at: pub.done >= at, 60, f"{at} published")  # type: ignore[misc]
        for ing in running:
            ing.stop()
        assert hand_over(base, target, retiring, threading.Event())
        assert pub.done < len(sent), "the publisher finished before the switch: make it slower"
        running = start(target)
    pub.finish()
    settle(influx, len(sent))
    for ing in running:
        ing.stop()
    assert_each_once(influx, sent, "after two switches while publishing")
    assert not session_exists(broker.port, "hand") and session_exists(broker.port, "hand-1")
    assert sorted(p.name for p in (tmp_path / "spool").glob("*.sqlite")) == ["hand-1.sqlite", "hand-2.sqlite"]


def test_handover_refuses_while_the_other_mode_runs(tmp_path: Path, db_url: str, sessions: Any,
                                                    influx: InfluxClient) -> None:
    """A worker's spool is locked (it runs): one ingester does not start, and says which one runs."""
    base = settings_for(tmp_path, db_url, 1, influx, "busy")
    held = Spool(tmp_path / "spool" / "busy-2.sqlite")
    Spool(tmp_path / "spool" / "busy-1.sqlite").close()  # a stopped worker
    try:
        with pytest.raises(HandoverError, match=r"client id busy-2 still runs .*stop it before starting one "
                                                r"ingester"):
            hand_over(base, [base.mqtt], lambda s, t: RetiringIngester(
                s, RegistryLookup(sessions), DeadLetterStore(sessions), InfluxClient(influx.url, influx.database),
                t), threading.Event())
        assert error_line(HandoverError("x")) == ("x", 1)
        assert spool_in_use(held.path) and not spool_in_use(tmp_path / "spool" / "busy-1.sqlite")
    finally:
        held.close()
    assert not spool_in_use(held.path)


def test_the_other_mode_is_found_by_its_spool_files(tmp_path: Path) -> None:
    """One ingester takes over from ``<id>-1`` .. ``<id>-64``, ``--workers N`` from ``<id>``, and
    only from ids whose spool file is in the spool directory."""
    base = Settings(mqtt=MqttSettings(client_id="lorong/ingest"), ingest=IngestSettings(spool_dir=tmp_path))
    for name in ("lorong_ingest-1", "lorong_ingest-3", "lorong_ingest-65", "lorong_ingest", "other-1"):
        (tmp_path / f"{name}.sqlite").write_bytes(b"")
    assert other_mode_ids(base, ["lorong/ingest"]) == ["lorong/ingest-1", "lorong/ingest-3"]
    assert other_mode_ids(base, ["lorong/ingest-1", "lorong/ingest-2"]) == ["lorong/ingest"]
    (tmp_path / "lorong_ingest.sqlite").unlink()
    assert other_mode_ids(base, ["lorong/ingest-1", "lorong/ingest-2"]) == []
    assert handover_topic("lorong/ingest") == "lorong/ingest/handover/lorong_ingest"


@pytest.mark.integration
def test_an_undone_handover_is_done_at_the_next_start(tmp_path: Path, db_url: str, sessions: Any,
                                                      influx: InfluxClient, broker: stack.Service) -> None:
    """A stop request during the hand-over leaves the old session and its spool file; the next
    start finds them and takes over: everything stored once."""
    register_fleet(sessions)
    base = settings_for(tmp_path, db_url, broker.port, influx, "undo")
    two = [worker_mqtt(base, i, "g") for i in (1, 2)]

    def retiring(settings: Settings, topic: str) -> RetiringIngester:
        return RetiringIngester(settings, RegistryLookup(sessions), DeadLetterStore(sessions),
                                InfluxClient(influx.url, influx.database), topic)

    start_ingester(base, sessions, influx).stop()  # the single ingester's session exists
    sent = timeless(0, 300)
    publish(broker.port, sent)
    stop = threading.Event()
    stop.set()
    assert not hand_over(base, two, retiring, stop)
    assert (tmp_path / "spool" / "undo.sqlite").exists()
    assert hand_over(base, two, retiring, threading.Event())
    assert not (tmp_path / "spool" / "undo.sqlite").exists()
    workers = [start_ingester(base.model_copy(update={"mqtt": m}), sessions, influx) for m in two]
    publish(broker.port, more := timeless(300, 100))
    settle(influx, 400)
    for ing in workers:
        ing.stop()
    assert_each_once(influx, sent + more, "after an undone and a done hand-over")


def test_a_damaged_spool_of_the_other_mode_stops_the_start(tmp_path: Path) -> None:
    """``--workers 2`` with the single ingester's spool damaged: one ``error:`` line naming it,
    exit status 2, no worker started (its points were acknowledged: nothing else has them)."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    bad = spool_dir / "lorong-ingest.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    migrate(f"sqlite:///{tmp_path / 'lorong.db'}")
    env = {**os.environ, "LORONG_VAR_DIR": str(tmp_path / "var"),
           "LORONG_DATABASE_URL": f"sqlite:///{tmp_path / 'lorong.db'}",
           "LORONG_INGEST__SPOOL_DIR": str(spool_dir), "LORONG_MQTT__CLIENT_ID": "lorong-ingest",
           "LORONG_MQTT__PORT": "1", "LORONG_INFLUX__URL": "http://127.0.0.1:1", "LORONG_INGEST__METRICS_PORT": "0"}
    env.pop("LORONG_DEBUG", None)
    proc = subprocess.run([str(Path(sys.executable).with_name("lorong")), "ingest", "run", "--workers", "2"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], out
    assert "worker 1 started" not in out and "Traceback" not in out


@pytest.mark.integration
def test_workers_to_one_keeps_every_timeless_reading_of_one_device(tmp_path: Path, db_url: str, sessions: Any,
                                                                   influx: InfluxClient, broker: stack.Service
                                                                   ) -> None:
    """One device sent readings without a time (and without ``seq``) while ``--workers 2`` was
    stopped, so both worker sessions hold some of them. The hand-over drained the two sessions at
    once, each through its own pipeline: two readings received in the same millisecond became one
    InfluxDB point (same series, same timestamp; 7 of 20 lost on a real stack)."""
    register_fleet(sessions)
    base = settings_for(tmp_path, db_url, broker.port, influx, "same")
    two = [worker_mqtt(base, i, "g") for i in (1, 2)]
    for ing in [start_ingester(base.model_copy(update={"mqtt": m}), sessions, influx) for m in two]:
        ing.stop()  # both worker sessions exist and collect while nothing runs
    device = FLEET[0]
    sent = [Sent(f"lorong/v1/{device}/up", json.dumps({"device_id": device, "metrics": {
        "pm25": {"value": float(k % 1000), "unit": "ug/m3"}, "pm10": {"value": float(k // 1000), "unit": "ug/m3"}}
    }).encode(), device, 0) for k in range(600)]
    publish(broker.port, sent)

    def retiring(settings: Settings, topic: str) -> RetiringIngester:
        return RetiringIngester(settings, RegistryLookup(sessions), DeadLetterStore(sessions),
                                InfluxClient(influx.url, influx.database), topic)

    assert hand_over(base, [base.mqtt], retiring, threading.Event())
    got = stored_values(influx)
    missing = sorted(set(range(len(sent))) - set(got))
    assert not missing and max(got.values()) == 1, f"{len(missing)} of {len(sent)} lost, e.g. {missing[:5]}"



def _worker_settings(base: Settings, index: int, workers: int) -> Settings:
    """Worker ``index``'s settings as ``lorong ingest run --workers`` gives them (:func:`worker_env`)."""
    env = worker_env(base, index, "g", {}, workers)
    mqtt = worker_mqtt(base, index, "g")
    slots = {k.removeprefix("LORONG_INGEST__").lower(): int(v) for k, v in env.items()
             if k.startswith("LORONG_INGEST__RX_SLOT")}
    return base.model_copy(update={"mqtt": mqtt, "ingest": base.ingest.model_copy(update=slots)})


@pytest.mark.integration
def test_workers_keep_every_timeless_reading_of_one_device_queued_in_both_sessions(
        tmp_path: Path, db_url: str, sessions: Any, influx: InfluxClient, broker: stack.Service) -> None:
    """``--workers 2`` starting with a backlog (a broker restart, a start after a stop): both
    workers empty their sessions at once, and two readings of one device without a time, received
    in the same millisecond by the two workers, became one point (each worker moved only its own
    readings apart). Each worker now stamps them on milliseconds of its own."""
    register_fleet(sessions)
    base = settings_for(tmp_path, db_url, broker.port, influx, "slot")
    two = [_worker_settings(base, i, 2) for i in (1, 2)]
    for ing in [start_ingester(s, sessions, influx) for s in two]:
        ing.stop()  # both sessions exist and collect while nothing runs
    device = FLEET[0]
    sent = [Sent(f"lorong/v1/{device}/up", json.dumps({"device_id": device, "metrics": {
        "pm25": {"value": float(k % 1000), "unit": "ug/m3"}, "pm10": {"value": float(k // 1000), "unit": "ug/m3"}}
    }).encode(), device, 0) for k in range(600)]
    publish(broker.port, sent)
    running = [Ingester(s, RegistryLookup(sessions), DeadLetterStore(sessions),
                        InfluxClient(influx.url, influx.database)) for s in two]
    for ing in running:  # at once, as after a broker restart
        ing.start()
    try:
        settle(influx, len(sent), timeout_s=10)
    finally:
        for ing in running:
            ing.stop()
    got = stored_values(influx)
    missing = sorted(set(range(len(sent))) - set(got))
    assert not missing and max(got.values()) == 1, f"{len(missing)} of {len(sent)} lost, e.g. {missing[:5]}"
