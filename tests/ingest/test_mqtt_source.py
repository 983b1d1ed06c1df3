"""The MQTT source on a real broker.

- Plain QoS 0/1 PUBLISH packets, packets with MQTT 5 properties, payloads far larger than one
  socket read and a UTF-8 topic arrive intact and in order; the manual PUBACKs sent from another
  thread reach the broker, so a new connection of the same session gets nothing again.
- Acks of an older connection are never sent: a loopback proxy between the source and the broker
  records the packet ids of every PUBLISH and PUBACK on the wire, per TCP connection, across a
  broker restart.
- The broker down at start, a refused login retried until the broker accepts it, a broker that
  lost the session (subscribed again), ``pause()``, subscriptions refused by the broker (its
  dynamic-security plugin), and a ``$share`` group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.credentials import mosquitto_hash
from ingest.mqtt_source import Delivery, MqttSource
from lorong.core.model import Message
from lorong.core.settings import MqttSettings
from lorong.storage import stack
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Service]:
    """A broker of this test only."""
    svc = stack.start_mosquitto(tmp_path / "mosquitto", stack.free_port())
    yield svc
    svc.stop()


class Collector:
    """Keeps every message and its delivery; the test decides when to ack (from its own thread,
    as the ingester's flush thread does)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.pending: list[Delivery] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Message, delivery: Delivery) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload, delivery.qos))
            self.pending.append(delivery)

    def take(self) -> list[Delivery]:
        with self.lock:
            out, self.pending = self.pending, []
        return out

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [p for _t, p, _q in self.got]


def publish(port: int, topic: str, payloads: list[bytes], username: str | None = None,
            password: str | None = None, qos: int = 1) -> None:
    """Publish ``payloads`` at ``qos`` on ``topic`` and wait until the broker has each one."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    if username:
        pub.username_pw_set(username, password)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        infos = [pub.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        pub.disconnect()
        pub.loop_stop()


def nothing_left(port: int, client_id: str, topics: list[str], wait_s: float = 1.0) -> list[bytes]:
    """Payloads a new connection of session ``client_id`` gets within ``wait_s`` (acked at once)."""
    sink = Collector()
    source = MqttSource(MqttSettings(port=port, client_id=client_id, topics=topics), sink)
    source.start()
    try:
        assert source.subscribed.wait(15)
        time.sleep(wait_s)
        source.ack_many(sink.take())
        return sink.payloads()
    finally:
        source.stop()


def _split(buf: bytes, on_packet: Callable[[int, bytes], None]) -> bytes:
    """Hand each complete MQTT packet of ``buf`` (fixed header byte, body) to ``on_packet``;
    return the incomplete rest (MQTT 5.0 section 2.1.4, Remaining Length)."""
    while True:
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return buf
            b = buf[i]
            length, mult, i = length + (b & 0x7F) * mult, mult * 128, i + 1
            if not b & 0x80:
                break
        if len(buf) < i + length:
            return buf
        on_packet(buf[0], buf[i:i + length])
        buf = buf[i + length:]


class Sniffer:
    """A loopback TCP proxy in front of a broker that records, per client connection, the packet ids
    (and payloads) of the QoS 1/2 PUBLISH packets sent to the client and of the client's PUBACKs.
    With ``uplink_delay_s`` each read of the client's bytes waits that long before it goes on to the
    broker: a slow uplink."""

    def __init__(self, broker_port: int, uplink_delay_s: float = 0.0) -> None:
        self.broker_port, self.uplink_delay_s = broker_port, uplink_delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.publishes: list[list[tuple[int, bytes]]] = []
        self.pubacks: list[list[int]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.broker_port), timeout=2)
            except OSError:  # broker down: refuse the client too
                down.close()
                continue
            up.settimeout(None)
            with self.lock:
                n = len(self.publishes)
                self.publishes.append([])
                self.pubacks.append([])
            threading.Thread(target=self._pump, args=(down, up, partial(self._from_client, n), self.uplink_delay_s),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, partial(self._from_broker, n)), daemon=True).start()

    def _from_client(self, n: int, header: int, body: bytes) -> None:
        if header >> 4 == 4:  # PUBACK
            with self.lock:
                self.pubacks[n].append(int.from_bytes(body[:2], "big"))

    def _from_broker(self, n: int, header: int, body: bytes) -> None:
        if header >> 4 == 3 and (header >> 1) & 3:  # PUBLISH, QoS 1 or 2
            tlen = int.from_bytes(body[:2], "big")
            mid = int.from_bytes(body[2 + tlen:4 + tlen], "big")
            rest = body[4 + tlen:]
            plen, i, mult = 0, 0, 1  # MQTT 5 properties length (variable byte integer)
            while True:
                plen, mult, i = plen + (rest[i] & 0x7F) * mult, mult * 128, i + 1
                if not rest[i - 1] & 0x80:
                    break
            with self.lock:
                self.publishes[n].append((mid, rest[i + plen:]))

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, on_packet: Callable[[int, bytes], None],
              delay_s: float = 0.0) -> None:
        buf = b""
        try:
            while chunk := src.recv(65536):
                buf = _split(buf + chunk, on_packet)
                time.sleep(delay_s)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()


def test_every_message_arrives_intact_and_acks_reach_the_broker(broker: stack.Service) -> None:
    settings = MqttSettings(port=broker.port, client_id="source-test", topics=["fp/#"])
    sink = Collector()
    source = MqttSource(settings, sink)
    source.start()
    assert source.subscribed.wait(15)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fp-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("gateway", "gw-7")
    want: list[tuple[str, bytes, int]] = []
    for k in range(3000):
        topic, payload, qos, p = "fp/small", f'{{"k":{k}}}'.encode(), 1, None
        if k % 500 == 7:
            topic, payload = "fp/big", bytes(range(256)) * (800 + k // 500)  # ~200 KiB, many reads
        elif k % 100 == 3:
            p = props  # MQTT 5 user properties
        elif k % 100 == 5:
            qos = 0
        elif k % 250 == 9:
            topic = "fp/Makassar-é"
        want.append((topic, payload, qos))
        info = pub.publish(topic, payload, qos=qos, properties=p)
        if k % 200 == 199:
            info.wait_for_publish(10)
    try:
        deadline = time.monotonic() + 60
        while len(sink.got) < len(want) and time.monotonic() < deadline:
            source.ack_many(sink.take())
            time.sleep(0.02)
        source.ack_many(sink.take())
        time.sleep(0.5)
        assert len(sink.got) == len(want)
        for qos in (0, 1):  # the publisher holds back QoS 1 beyond its in-flight window, not QoS 0
            got = [m for m in sink.got if m[2] == qos]
            assert got == [m for m in want if m[2] == qos]  # order kept, bytes intact, nothing twice
    finally:
        pub.loop_stop()
        pub.disconnect()
        source.stop()
    assert nothing_left(broker.port, "source-test", ["fp/#"]) == []  # every PUBACK reached the broker


def test_the_last_acks_reach_the_broker_before_the_session_is_taken_over(broker: stack.Service) -> None:
    """Switching modes, an old session is resumed by a new process the moment its ingester stops:
    the broker read the new CONNECT before the old connection's last PUBACKs, took the session over,
    sent the messages of those PUBACKs again, and readings without a device time were stored twice
    (2 of 4 hand-over tests on a busy machine). stop() now makes a round trip (PINGREQ, PINGRESP)
    after the last acks: the broker has read them before the connection ends."""
    proxy = Sniffer(broker.port, uplink_delay_s=0.4)
    sink = Collector()
    source = MqttSource(MqttSettings(port=proxy.port, client_id="settle-test", topics=["st/#"]), sink)
    source.start()
    try:
        assert source.subscribed.wait(15)
        publish(broker.port, "st/x", [f'{{"k":{k}}}'.encode() for k in range(50)])
        wait_for(lambda: len(sink.got) == 50, 15, "50 messages")
        assert source.ack_many(sink.take()) == 50
    finally:
        source.stop()
        proxy.close()
    assert nothing_left(broker.port, "settle-test", ["st/#"]) == []  # straight to the broker, at once


def test_acks_of_an_old_connection_are_never_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """20 messages are taken but not acked; the broker restarts and redelivers them with the same
    packet ids. Acking the old deliveries sends nothing; acking the redeliveries sends exactly one
    PUBACK per redelivered id, on the new connection; afterwards the session holds nothing, and
    asyncio logs nothing."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    workdir, port = tmp_path / "mq", stack.free_port()
    broker = stack.start_mosquitto(workdir, port)
    sniff = Sniffer(port)
    sink = Collector()
    source = MqttSource(MqttSettings(port=sniff.port, client_id="gen-test", topics=["gen/#"]), sink)
    sent = [f"m{k}".encode() for k in range(20)]
    try:
        source.start()
        assert source.subscribed.wait(15)
        publish(port, "gen/a", sent)
        wait_for(lambda: len(sink.got) == 20, 10, "20 messages delivered")
        old, first_generation = sink.take(), source.generation
        broker.stop()
        wait_for(lambda: not source.connected.is_set(), 10, "connection lost")
        assert source.ack_many(old) == 0  # while offline
        broker = stack.start_mosquitto(workdir, port)
        wait_for(lambda: source.subscribed.is_set() and len(sink.got) == 40, 30, "reconnected, 20 redelivered")
        assert source.generation >= first_generation + 2
        assert source.ack_many(old) == 0  # after the reconnect
        time.sleep(0.5)
        with sniff.lock:
            assert all(acks == [] for acks in sniff.pubacks), "an ack of the old connection was sent"
        assert sorted(sink.payloads()[20:]) == sorted(sent)
        assert source.ack_many(sink.take()) == 20
        wait_for(lambda: sum(map(len, sniff.pubacks)) >= 20, 10, "20 PUBACKs on the wire")
        time.sleep(0.3)
        with sniff.lock:
            first, last = sniff.publishes[0], sniff.publishes[-1]
            acks = [a for conn in sniff.pubacks for a in conn]
            assert sniff.pubacks[-1] == acks  # all on the last connection ...
        assert {m for m, _p in first} == {m for m, _p in last}  # MQTT 5.0 section 4.4: same packet ids
        assert sorted(acks) == sorted(m for m, _p in last)  # ... one per redelivered id, none twice
        assert sorted(d.mid for d in old) == sorted(m for m, _p in first)  # deliveries carry the packet ids
    finally:
        source.stop()
        sniff.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    try:
        assert nothing_left(port, "gen-test", ["gen/#"]) == []
    finally:
        broker.stop()


def test_qos_2_messages_are_acknowledged_with_pubrec_only_when_asked(broker: stack.Service) -> None:
    """A QoS 2 subscription: acked messages complete their PUBREC/PUBREL/PUBCOMP exchange and leave
    the session; messages taken but not acked are sent again to the next connection."""
    sink = Collector()
    source = MqttSource(MqttSettings(port=broker.port, client_id="qos2-test", topics=["q2/#"], qos=2), sink)
    source.start()
    try:
        assert source.subscribed.wait(15)
        publish(broker.port, "q2/a", [b"a0", b"a1", b"a2"], qos=2)
        wait_for(lambda: len(sink.got) == 3, 10, "3 QoS 2 messages")
        taken = sink.take()
        assert [(d.qos, d.mid > 0) for d in taken] == [(2, True)] * 3
        assert source.ack_many(taken) == 3
        time.sleep(0.5)  # PUBREC out, PUBREL in, PUBCOMP out
        publish(broker.port, "q2/a", [b"b0", b"b1"], qos=2)
        wait_for(lambda: len(sink.got) == 5, 10, "2 more")
    finally:
        source.stop()
    assert nothing_left(broker.port, "qos2-test", ["q2/#"]) == [b"b0", b"b1"]


def test_broker_down_at_start_then_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """start() returns at once, logs "not reachable" once while it retries, and connects, subscribes
    and receives once the broker starts."""
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    port = stack.free_port()
    sink = Collector()
    source = MqttSource(MqttSettings(port=port, client_id="late-test", topics=["late/#"]), sink)
    t0 = time.monotonic()
    source.start()
    assert time.monotonic() - t0 < 0.5
    try:
        time.sleep(3.5)  # attempts at 0, 1 and 3 s
        assert not source.connected.is_set()
        assert sum("not reachable" in r.getMessage() for r in caplog.records) == 1
        broker = stack.start_mosquitto(tmp_path / "mq", port)
        try:
            assert source.subscribed.wait(15)
            publish(port, "late/x", [b"hello"])
            wait_for(lambda: sink.payloads() == [b"hello"], 10, "the message")
            assert source.ack_many(sink.take()) == 1
        finally:
            source.stop()
            broker.stop()
    finally:
        source.stop()


def test_a_refused_connection_is_retried_until_the_broker_accepts(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The broker does not know the ingester's account yet (CONNACK 0x87, which gmqtt alone would
    never retry): the refusal is logged once, and the source connects once the account exists
    and Mosquitto has reloaded its password file (SIGHUP)."""
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    workdir, port = tmp_path / "mq", stack.free_port()
    workdir.mkdir()
    passwd = workdir / "passwd"
    passwd.write_text(f"someone-else:{mosquitto_hash('x')}\n")
    broker = stack.start_mosquitto(workdir, port, passwd)
    settings = MqttSettings(port=port, client_id="refused-test", username="ingest", password="s3cret",  # type: ignore[arg-type]
                            topics=["ref/#"])
    source = MqttSource(settings, Collector())
    try:
        source.start()
        time.sleep(3.5)  # attempts at 0, 1 and 3 s
        assert not source.connected.is_set()
        refused = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refused) == 1 and "code 135" in refused[0], refused
        passwd.write_text(f"ingest:{mosquitto_hash('s3cret')}\n")
        broker.proc.send_signal(signal.SIGHUP)
        assert source.subscribed.wait(20)
    finally:
        source.stop()
        broker.stop()


def test_subscribes_again_when_the_broker_lost_the_session(tmp_path: Path) -> None:
    """The broker restarts without its state (no session, no subscription): the source reconnects,
    subscribes again and receives what is published afterwards."""
    workdir, port = tmp_path / "mq", stack.free_port()
    broker = stack.start_mosquitto(workdir, port)
    sink = Collector()
    source = MqttSource(MqttSettings(port=port, client_id="resub-test", topics=["resub/#"]), sink)
    try:
        source.start()
        assert source.subscribed.wait(15)
        broker.stop()
        (workdir / "mosquitto.db").unlink()
        broker = stack.start_mosquitto(workdir, port)
        wait_for(source.subscribed.is_set, 30, "subscribed again")
        publish(port, "resub/x", [b"after"])
        wait_for(lambda: sink.payloads() == [b"after"], 10, "the message published after the restart")
    finally:
        source.stop()
        broker.stop()


def test_pause_waits_for_the_message_in_progress_and_leaves_later_ones_unacked(broker: stack.Service) -> None:
    """pause() returns only after the message being handled is done; later messages are not handed
    over, yet acks of earlier ones still go out; the broker keeps the later ones for the session."""
    started, finished = threading.Event(), threading.Event()
    sink = Collector()

    def slow(msg: Message, delivery: Delivery) -> None:
        sink(msg, delivery)
        if msg.payload == b"slow":
            started.set()
            time.sleep(0.5)
            finished.set()

    settings = MqttSettings(port=broker.port, client_id="pause-test", topics=["pause/#"])
    source = MqttSource(settings, slow)
    source.start()
    try:
        assert source.subscribed.wait(15)
        publish(broker.port, "pause/x", [b"m0", b"m1", b"slow"])
        assert started.wait(10)
        source.pause()
        assert finished.is_set()
        publish(broker.port, "pause/x", [b"late0", b"late1"])
        time.sleep(1.0)
        assert sink.payloads() == [b"m0", b"m1", b"slow"]
        assert source.ack_many(sink.take()) == 3
    finally:
        source.stop()
    assert nothing_left(broker.port, "pause-test", ["pause/#"]) == [b"late0", b"late1"]


DYNSEC = next(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"), None)
"""Mosquitto's dynamic-security plugin (Debian's ``mosquitto`` package ships it)."""


def start_dynsec_broker(workdir: Path, port: int, subscribe_patterns: list[str]) -> stack.Service:
    """Mosquitto with its dynamic-security plugin: anonymous clients may publish anywhere but
    subscribe only to ``subscribe_patterns`` (Mosquitto's own ACL file never refuses a SUBSCRIBE)."""
    if DYNSEC is None:
        pytest.fail("mosquitto_dynamic_security.so not found: run `make test` (it installs Debian's mosquitto)")
    conf = stack.mosquitto_conf(workdir, port)
    acls = [{"acltype": "subscribePattern", "topic": t, "allow": True} for t in subscribe_patterns]
    (workdir / "dynsec.json").write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True, "subscribe": False,
                             "unsubscribe": True},
        "clients": [], "roles": [{"rolename": "ingest", "acls": acls}],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "ingest"}]}], "anonymousGroup": "anonymous"}))
    conf.write_text(conf.read_text() + f"plugin {DYNSEC}\nplugin_opt_config_file {workdir / 'dynsec.json'}\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    svc = stack.Service("mosquitto", proc, port, workdir)
    try:
        stack.wait_for_port(port, 10)
    except TimeoutError:
        svc.kill()
        raise
    return svc


def test_refused_subscription_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The broker refuses two of three filters (SUBACK 0x87, MQTT 5.0 section 3.9.3): the source
    logs them, counts itself subscribed, and receives on the filter it got."""
    caplog.set_level(logging.INFO, logger="ingest.mqtt_source")
    broker = start_dynsec_broker(tmp_path / "mq", stack.free_port(), ["ok/#"])
    sink = Collector()
    settings = MqttSettings(port=broker.port, client_id="acl-test", topics=["ok/#", "secret/#", "$share/g/ok/#"])
    source = MqttSource(settings, sink)
    try:
        source.start()
        assert source.subscribed.wait(15)
        refused = [r.getMessage() for r in caplog.records if "subscription refused" in r.getMessage()]
        assert sorted(refused) == ["subscription refused: $share/g/ok/#: 0x87 (not authorized)",
                                   "subscription refused: secret/#: 0x87 (not authorized)"]
        publish(broker.port, "secret/x", [b"hidden"])
        publish(broker.port, "ok/x", [b"seen"])
        wait_for(lambda: sink.payloads() == [b"seen"], 10, "the message on the allowed filter")
        time.sleep(0.3)
        assert sink.payloads() == [b"seen"]
    finally:
        source.stop()
        broker.stop()


def test_shared_subscription_splits_the_stream(broker: stack.Service) -> None:
    """Two sources in one ``$share`` group get every message exactly once between them."""
    sinks = [Collector(), Collector()]
    sources = [MqttSource(MqttSettings(port=broker.port, client_id=f"share-{i}", topics=["$share/g/sh/#"]), s)
               for i, s in enumerate(sinks)]
    sent = [f"s{k}".encode() for k in range(200)]
    try:
        for s in sources:
            s.start()
        assert all(s.subscribed.wait(15) for s in sources)
        publish(broker.port, "sh/x", sent)
        wait_for(lambda: sum(len(s.got) for s in sinks) == 200, 10, "200 messages in the group")
        a, b = (set(s.payloads()) for s in sinks)
        assert a and b and not a & b and a | b == set(sent)
    finally:
        for s in sources:
            s.stop()


def test_a_gmqtt_without_the_publish_hooks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The acknowledgement design rests on two gmqtt handler methods; a release without them must
    stop the ingester at start-up, not lose acknowledgements silently."""
    from gmqtt.mqtt.handler import MqttPackageHandler

    monkeypatch.delattr(MqttPackageHandler, "_handle_qos_1_publish_packet")
    with pytest.raises(RuntimeError, match="_handle_qos_1_publish_packet"):
        MqttSource(MqttSettings(client_id="no-hooks"), Collector())
