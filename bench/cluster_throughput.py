"""Ingest throughput through a three-node NATS cluster, beside its own reference and the Mosquitto path.

Starts its own InfluxDB, a three-node NATS cluster (lorong.storage.cluster, uplinks replicated R=3) and,
for the comparison, Mosquitto (lorong.storage.stack), all in a temporary directory on loopback, and
publishes the same N ``lorong-json`` uplinks (bench/ingest_throughput.py's payloads) each time,
with one ``mosquitto_pub -q 1 -l`` (MQTT 3.1.1) per device, spread over the cluster's nodes:

1. cluster reference: a NATS subscriber doing no work, a durable pull consumer on the uplink stream
   (nats-py) that acknowledges each uplink; rate = N / (first publish -> N acknowledged);
2. cluster Lorong: ``lorong ingest run`` with ``LORONG_INGEST__SOURCE=nats``; rate = N / (first
   publish -> N points readable in InfluxDB);
3. Mosquitto path: ``mosquitto_sub -q 1`` (reference) and ``lorong ingest run`` on one Mosquitto.

All in one run on one machine: compare the figures of one run only.

Usage::

    .venv/bin/python bench/cluster_throughput.py [--messages 30000] [--devices 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest_throughput import TOPIC_FILTER, children, cpu_s, free_ports, metric, publish, reference, write_payloads
from ingest_throughput import lorong as mosquitto_lorong

from devices.registry import DeviceIn, add_device
from lorong.core.model import DeviceKind
from lorong.core.settings import NatsSettings, Settings
from lorong.storage import cluster, stack
from lorong.storage.influx import InfluxClient
from lorong.storage.runtime import open_sessions


def publish_spread(nodes: list[cluster.NatsNode], files: list[Path], devices: list[str], tag: str,
                   timeout_s: float) -> float:
    """``mosquitto_pub`` per device, device i to node i mod 3, all at once; seconds until all exited."""
    t0 = time.monotonic()
    groups: dict[int, tuple[list[Path], list[str]]] = {}
    for i, (f, d) in enumerate(zip(files, devices, strict=True)):
        fs, ds = groups.setdefault(i % len(nodes), ([], []))
        fs.append(f)
        ds.append(d)
    import threading

    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            publish(nodes[k].ports.mqtt, groups[k][0], groups[k][1], f"{tag}{k}", timeout_s)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0


async def _reference(servers: list[str], n: int) -> float:
    """Pull and ack N uplinks with a durable consumer of its own; seconds from ``started`` to the Nth."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(servers)
    js = nc.jetstream()
    await js.add_consumer(cluster.UPLINK_STREAM, ConsumerConfig(
        durable_name="bench-ref", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20000,
        filter_subjects=cluster.consumer_subjects([TOPIC_FILTER])))
    sub = await js.pull_subscribe_bind(durable="bench-ref", stream=cluster.UPLINK_STREAM)
    got, t0 = 0, None
    while got < n:
        try:
            msgs = await sub.fetch(1000, timeout=1)
        except Exception:
            continue
        if t0 is None:
            t0 = started_at[0]
        for m in msgs:
            await nc.publish(m.reply, b"")
        got += len(msgs)
    await nc.flush()
    took = time.monotonic() - (t0 or time.monotonic())
    await js.delete_consumer(cluster.UPLINK_STREAM, "bench-ref")
    await nc.close()
    return took


started_at = [0.0]


def cluster_reference(nodes: list[cluster.NatsNode], n: int, files: list[Path], devices: list[str],
                      timeout_s: float) -> float:
    """Seconds from the first publish until the no-work subscriber acknowledged N uplinks."""
    import threading

    result: list[float] = []
    ready = threading.Event()

    def consume() -> None:
        async def main() -> None:
            task = asyncio.ensure_future(_reference([x.url for x in nodes], n))
            await asyncio.sleep(1.0)  # consumer made before the first publish
            ready.set()
            result.append(await asyncio.wait_for(task, timeout_s))
        asyncio.run(main())

    t = threading.Thread(target=consume)
    t.start()
    ready.wait(30)
    started_at[0] = time.monotonic()
    publish_spread(nodes, files, devices, "ref", timeout_s)
    t.join(timeout_s)
    if not result:
        raise RuntimeError("the reference subscriber did not get every uplink")
    return result[0]


def cluster_lorong(root: Path, nodes: list[cluster.NatsNode], influx_port: int, n: int, files: list[Path],
                   devices: list[str], timeout_s: float) -> tuple[float, float]:
    """``lorong ingest run`` on the cluster: (seconds first publish -> N points in InfluxDB, CPU s)."""
    exe = Path(sys.executable).with_name("lorong")
    db, port = "bench_cluster", free_ports(1)
    influx = InfluxClient(f"http://127.0.0.1:{influx_port}", db)
    env = {**os.environ, "LORONG_DATABASE_URL": f"sqlite:///{root / 'lorong.db'}", "LORONG_VAR_DIR": str(root / "var"),
           "LORONG_INGEST__SOURCE": "nats", "LORONG_NATS__SERVERS": json.dumps([x.url for x in nodes]),
           "LORONG_MQTT__CLIENT_ID": "bench-cluster", "LORONG_MQTT__TOPICS": json.dumps([TOPIC_FILTER]),
           "LORONG_INFLUX__URL": f"http://127.0.0.1:{influx_port}", "LORONG_INFLUX__DATABASE": db,
           "LORONG_INGEST__SPOOL_DIR": str(root / "spool-cluster"), "LORONG_INGEST__METRICS_PORT": str(port)}
    log_path = root / "ingest-cluster.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(exe), "--log-level", "WARNING", "ingest", "run"], env=env, cwd=root,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while metric(port, "lorong_ingest_mqtt_up") != 1.0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ingester did not bind: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        pids = [*children(proc.pid), proc.pid]
        cpu0 = sum(cpu_s(p) for p in pids)
        t0 = time.monotonic()
        publish_spread(nodes, files, devices, "lorong", timeout_s)
        while time.monotonic() - t0 < timeout_s:
            rows = influx.records('SELECT count("pm25") FROM "air_quality"') if (
                (metric(port, "lorong_ingest_messages_received_total") or 0) >= n) else []
            if rows and rows[0]["count"] >= n:
                return time.monotonic() - t0, sum(cpu_s(p) for p in pids) - cpu0
            time.sleep(0.1)
        raise RuntimeError(f"not all {n} points in InfluxDB within {timeout_s} s")
    finally:
        influx.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and print the figures; exit code 0 unless something broke."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--devices", type=int, default=8, help="publisher processes, one per device")
    args = ap.parse_args(argv)
    n, devices = args.messages, [f"BENCH-{i:03d}" for i in range(args.devices)]
    timeout_s = max(120.0, n / 200)
    with tempfile.TemporaryDirectory(prefix="lorong-bench-") as tmp:
        root = Path(tmp)
        files, size = write_payloads(root, n, devices)
        sessions = open_sessions(Settings(database_url=f"sqlite:///{root / 'lorong.db'}"))
        with sessions.begin() as s:
            for d in devices:
                add_device(s, DeviceIn(id=d, kind=DeviceKind.AIR, kecamatan="Panakkukang"))
        influxd = stack.start_influxd(root / "influxd", stack.free_port())
        ports = [cluster.NodePorts(*(stack.free_port() for _ in range(4))) for _ in range(3)]
        nats = NatsSettings()
        nodes = cluster.make_cluster(root / "nats", nats, ports[0].mqtt, 3, ports)
        try:
            cluster.start_cluster(nodes)
            cluster.ensure_uplinks([x.url for x in nodes], ports[0].mqtt, nats, [TOPIC_FILTER])
            # without the ingesters' consumer the stream keeps the reference run's uplinks for the
            # reference only; the ingester makes its consumer again when it starts
            asyncio.run(_drop_consumer([x.url for x in nodes], nats))
            ref_s = cluster_reference(nodes, n, files, devices, timeout_s)
            lorong_s, cpu = cluster_lorong(root, nodes, influxd.port, n, files, devices, timeout_s)
        finally:
            for x in nodes:
                x.stop()
        mq = stack.start_mosquitto(root / "mosquitto", stack.free_port())
        try:
            mq_ref_s, _ = reference(mq.port, n, files, devices, timeout_s)
        finally:
            mq.stop()
        mq = stack.start_mosquitto(root / "mosquitto2", stack.free_port())
        try:
            mq_lorong_s = mosquitto_lorong(root, mq.port, influxd.port, n, files, devices, timeout_s)[0]
        finally:
            mq.stop()
            influxd.stop()
    print(f"Cluster ingest throughput: {n:,} lorong-json uplinks at QoS 1 ({len(devices)} devices, {size} B each), "
          f"one run on 127.0.0.1, {os.cpu_count()} CPUs")
    rows = [("NATS x3 (R=3) -> no-work subscriber (reference)", n / ref_s),
            ("NATS x3 (R=3) -> lorong ingest run -> InfluxDB", n / lorong_s),
            ("Mosquitto -> mosquitto_sub -q 1 (reference)", n / mq_ref_s),
            ("Mosquitto -> lorong ingest run -> InfluxDB", n / mq_lorong_s)]
    for label, rate in rows:
        print(f"  {label:<50}: {rate:>8,.0f} msg/s")
    print(f"  {'cluster Lorong / cluster reference':<50}: {ref_s / lorong_s:>8.2f}")
    print(f"  {'cluster Lorong / Mosquitto Lorong':<50}: {mq_lorong_s / lorong_s:>8.2f}")
    print(f"  {'ingester CPU per uplink on the cluster':<50}: {cpu / n * 1e6:>8.0f} us")
    return 0


async def _drop_consumer(servers: list[str], nats_settings: NatsSettings) -> None:
    """Delete the ingesters' durable consumer."""
    import nats

    nc = await nats.connect(servers)
    js = nc.jetstream()
    try:
        await js.delete_consumer(cluster.UPLINK_STREAM, nats_settings.durable)
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(main())
