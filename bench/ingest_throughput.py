"""End-to-end ingest throughput and memory, beside the broker's own QoS 1 rate.

Starts its own Mosquitto and InfluxDB (storage.stack, temporary directory), registers a few
air stations, then publishes the same N native ``lorong-json`` uplinks (distinct device times,
so each is its own point) twice in one run, with one ``mosquitto_pub -q 1 -l`` per device:

1. reference: to a single C subscriber, ``mosquitto_sub -q 1 -c -C N`` (its session is made
   first, so nothing published before it connects is lost); rate = N / (first publish ->
   subscriber exit);
2. Lorong: to ``lorong ingest run`` (a child process, configured with ``LORONG_*`` variables);
   rate = N / (first publish -> N points readable in InfluxDB), i.e. publish to durable.

It prints both rates, their ratio, the ingester's peak RSS (``VmHWM`` of /proc/<pid>/status) and
the targets: end to end at least half the broker's rate, peak RSS under 200 MB. Targets are in
the output, not asserted: the machine may be shared and timing is noisy.

Usage::

    .venv/bin/python bench/ingest_throughput.py [--messages 100000] [--devices 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from core.model import DeviceKind
from core.settings import Settings
from devices.registry import DeviceIn, add_device
from storage import stack
from storage.influx import InfluxClient
from storage.runtime import open_sessions

TOPIC_FILTER = "lorong/v1/+/up"
TARGET_RATIO = 0.5
TARGET_RSS_MB = 200.0


def write_payloads(root: Path, n: int, devices: list[str]) -> tuple[list[Path], int]:
    """One file of payload lines per device; returns the files and the mean payload size (bytes)."""
    base_ms = (int(time.time()) - 86400) * 1000
    files = {d: open(root / f"{d}.jsonl", "w") for d in devices}  # noqa: SIM115 - closed below
    size = 0
    for k in range(n):
        d = devices[k % len(devices)]
        when = datetime.fromtimestamp((base_ms + k) / 1000, UTC).isoformat(timespec="milliseconds")
        body = json.dumps({"device_id": d, "time": when, "seq": k, "metrics": {
            "pm25": {"value": 10 + k % 300, "unit": "ug/m3"}, "pm10": {"value": 20 + k % 400, "unit": "ug/m3"},
            "temperature": {"value": 24 + (k % 100) / 10, "unit": "degC"}}}, separators=(",", ":"))
        size += len(body)
        files[d].write(body + "\n")
    for fh in files.values():
        fh.close()
    return [root / f"{d}.jsonl" for d in devices], size // max(n, 1)


def publish(port: int, files: list[Path], devices: list[str], tag: str, timeout_s: float) -> float:
    """Run one ``mosquitto_pub -q 1 -l`` per device at once; returns the seconds until all exited.

    Raises:
        RuntimeError: a publisher failed or timed out.
    """
    exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    t0 = time.monotonic()
    procs = []
    for f, d in zip(files, devices, strict=True):
        with open(f, "rb") as stdin:
            procs.append(subprocess.Popen([exe, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l",
                                           "-i", f"bench-pub-{tag}-{d}", "-t", f"lorong/v1/{d}/up"],
                                          stdin=stdin, stdout=subprocess.DEVNULL))
    for p in procs:
        if p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0))) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {p.returncode}")
    return time.monotonic() - t0


def reference(port: int, n: int, files: list[Path], devices: list[str], timeout_s: float) -> tuple[float, float]:
    """Broker -> one ``mosquitto_sub -q 1`` (persistent session made first).

    Returns:
        (seconds publish start -> subscriber received N, seconds for the publishers alone).
    """
    exe = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    common = [exe, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-i", "bench-ref", "-t", TOPIC_FILTER]
    subprocess.run([*common, "-c", "-E"], check=True, timeout=10)  # make the session, subscribed
    sub = subprocess.Popen([*common, "-c", "-C", str(n)], stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    pub_s = publish(port, files, devices, "ref", timeout_s)
    try:
        sub.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError(f"mosquitto_sub did not receive {n} messages within {timeout_s} s") from None
    sub_s = time.monotonic() - t0
    subprocess.run([exe, "-h", "127.0.0.1", "-p", str(port), "-i", "bench-ref", "-t", TOPIC_FILTER, "-E"],
                   check=True, timeout=10)  # clean session: drop the reference subscription
    return sub_s, pub_s


def metric(port: int, name: str) -> float | None:
    """One sample of the ingester's Prometheus endpoint, or None."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return None
    for row in body.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[1])
    return None


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident set size of ``pid``, MB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) / 1024
    return float("nan")


def lorong(root: Path, mq_port: int, influx_port: int, n: int, files: list[Path], devices: list[str],
           timeout_s: float, ingesters: int = 1) -> tuple[float, float, float, list[float], list[float]]:
    """Publish to ``ingesters`` x ``lorong ingest run`` and wait until all points are in InfluxDB.

    More than one ingester share the stream through one ``$share`` group (own client ids).

    Returns:
        (seconds publish start -> N points in InfluxDB, seconds -> N messages received,
        seconds for the publishers alone, peak RSS MB of each ingester, RSS MB of each when
        subscribed and idle).
    """
    topic = TOPIC_FILTER if ingesters == 1 else f"$share/bench/{TOPIC_FILTER}"
    exe = Path(sys.executable).with_name("lorong")
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    influx = InfluxClient(f"http://127.0.0.1:{influx_port}", "bench")
    try:
        for i in range(ingesters):
            metrics_port = stack.free_port()
            env = {**os.environ,
                   "LORONG_DATABASE_URL": f"sqlite:///{root / 'lorong.db'}", "LORONG_VAR_DIR": str(root / "var"),
                   "LORONG_MQTT__PORT": str(mq_port), "LORONG_MQTT__CLIENT_ID": f"bench-ingest-{i}",
                   "LORONG_MQTT__TOPICS": json.dumps([topic]), "LORONG_INGEST__INSTANCE": f"bench-{i}",
                   "LORONG_INFLUX__URL": f"http://127.0.0.1:{influx_port}", "LORONG_INFLUX__DATABASE": "bench",
                   "LORONG_INGEST__SPOOL_DIR": str(root / "spool"),
                   "LORONG_INGEST__METRICS_PORT": str(metrics_port)}
            log = open(root / f"ingest-{i}.log", "wb")  # noqa: SIM115 - owned by the child
            procs.append((subprocess.Popen([str(exe), "--log-level", "WARNING", "ingest", "run"], env=env,
                                           cwd=root, stdout=log, stderr=subprocess.STDOUT), metrics_port))
            log.close()
        deadline = time.monotonic() + 60
        while any(metric(port, "lorong_ingest_mqtt_up") != 1.0 for _, port in procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in procs):
                raise RuntimeError(f"ingester did not subscribe: {(root / 'ingest-0.log').read_text()[-2000:]}")
            time.sleep(0.1)
        idle = [rss_mb(p.pid, "VmRSS") for p, _ in procs]
        t0 = time.monotonic()
        pub_s = publish(mq_port, files, devices, "lorong", timeout_s)
        received_s = durable_s = None
        while time.monotonic() - t0 < timeout_s:
            if received_s is None and sum(metric(port, "lorong_ingest_messages_received_total") or 0
                                          for _, port in procs) >= n:
                received_s = time.monotonic() - t0
            rows = influx.records('SELECT count("pm25") FROM "air_quality"')
            if rows and rows[0]["count"] >= n:
                durable_s = time.monotonic() - t0
                break
            time.sleep(0.1)
        if durable_s is None:
            raise RuntimeError(f"not all {n} points in InfluxDB within {timeout_s} s")
        rss = [rss_mb(p.pid) for p, _ in procs]
    finally:
        influx.close()
        for p, _ in procs:
            p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return durable_s, received_s if received_s is not None else durable_s, pub_s, rss, idle


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures; exit code 0 unless something broke."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=8, help="publisher processes, one per device")
    ap.add_argument("--ingesters", type=int, default=1, help="ingester processes in one $share group")
    args = ap.parse_args(argv)
    n, devices = args.messages, [f"BENCH-{i:03d}" for i in range(args.devices)]
    timeout_s = max(120.0, n / 500)
    with tempfile.TemporaryDirectory(prefix="lorong-bench-") as tmp:
        root = Path(tmp)
        files, size = write_payloads(root, n, devices)
        settings = Settings(database_url=f"sqlite:///{root / 'lorong.db'}")
        sessions = open_sessions(settings)
        with sessions.begin() as s:
            for d in devices:
                add_device(s, DeviceIn(id=d, kind=DeviceKind.AIR, kecamatan="Panakkukang"))
        mq = stack.start_mosquitto(root / "mosquitto", stack.free_port())
        influxd = stack.start_influxd(root / "influxd", stack.free_port())
        try:
            ref_s, ref_pub_s = reference(mq.port, n, files, devices, timeout_s)
            e2e_s, recv_s, pub_s, rss, idle = lorong(root, mq.port, influxd.port, n, files, devices, timeout_s,
                                               args.ingesters)
        finally:
            mq.stop()
            influxd.stop()
    ref_rate, e2e_rate = n / ref_s, n / e2e_s
    ratio = e2e_rate / ref_rate
    who = "lorong ingest run" if args.ingesters == 1 else f"{args.ingesters} x lorong ingest run ($share)"

    def row(label: str, text: str) -> None:
        print(f"  {label:<46}: {text}")

    print(f"Lorong ingest throughput: {n:,} lorong-json messages at QoS 1 ({len(devices)} devices, "
          f"{size} B each, 3 readings per message), Mosquitto + InfluxDB on 127.0.0.1, {os.cpu_count()} CPUs")
    row(f"publishers alone, {len(devices)} x mosquitto_pub -q 1 -l",
        f"{n / ref_pub_s:>8,.0f} msg/s (reference run), {n / pub_s:,.0f} msg/s (Lorong run)")
    row(f"broker -> mosquitto_sub -q 1 -C {n}", f"{ref_rate:>8,.0f} msg/s   (reference)")
    row(f"broker -> {who}, acked", f"{n / recv_s:>8,.0f} msg/s   (durable in the spool)")
    row("publish -> durable in InfluxDB", f"{e2e_rate:>8,.0f} msg/s = points/s, {3 * e2e_rate:,.0f} readings/s")
    row("end to end / reference", f"{ratio:>8.2f}         target >= {TARGET_RATIO:.2f}    "
        f"{'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
    row("ingester peak RSS (VmHWM)", f"{max(rss):>8.1f} MB      target <  {TARGET_RSS_MB:.0f} MB  "
        f"{'OK' if max(rss) < TARGET_RSS_MB else 'MISSED'}"
        + (f"  (each: {', '.join(f'{r:.0f}' for r in rss)})" if len(rss) > 1 else ""))
    row("  of which at idle after start (imports)", f"{max(idle):>8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
