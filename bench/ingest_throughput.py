"""End-to-end ingest throughput and memory, beside the broker's own QoS 1 rate.

Starts its own Mosquitto and InfluxDB (lorong.storage.stack, temporary directory), registers a few
air stations, then publishes the same N native ``lorong-json`` uplinks (distinct device times,
so each is its own point) once per measurement, with one ``mosquitto_pub -q 1 -l`` per device:

1. reference: to a single C subscriber, ``mosquitto_sub -q 1 -c -C N`` (its session is made
   first, so nothing published before it connects is lost); rate = N / (first publish ->
   subscriber exit). It runs before and after the Lorong runs, and the ratio uses the mean of
   the two rates: on a shared 2-CPU machine one reference run alone varies by +-10 %;
2. Lorong: to ``lorong ingest run [--workers N]`` (a child process, configured with ``LORONG_*`` variables);
   rate = N / (first publish -> N points readable in InfluxDB), i.e. publish to durable.

It prints both rates, their ratio, the ingester's peak RSS (``VmHWM`` of /proc/<pid>/status) and
the targets: end to end at least half the broker's rate, peak RSS under 200 MB. Targets are in
the output, not asserted: the machine may be shared and timing is noisy.

Each worker count in ``--workers`` (default ``1,2``) is one ``lorong ingest run --workers N``
(N > 1: N ingester processes in one ``$share`` group) on a fresh broker, writing to its own
database of the same InfluxDB.

Usage::

    .venv/bin/python bench/ingest_throughput.py [--messages 100000] [--devices 8] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devices.registry import DeviceIn, add_device
from lorong.core.model import DeviceKind
from lorong.core.settings import Settings
from lorong.storage import stack
from lorong.storage.influx import InfluxClient
from lorong.storage.runtime import open_sessions

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


_HTTP = httpx.Client(timeout=1)
"""One client for every poll: ``httpx.get`` builds a client (and loads the CA bundle) per call,
which took about a third of a core away from the processes under test at ten polls a second."""


def metric(port: int, name: str) -> float | None:
    """One sample of the ingester's Prometheus endpoint, or None.

    Asks for that metric only (prometheus-client's ``name[]`` filter) and uncompressed: the whole
    page, gzipped, ten times a second cost the ingester under test 2-4 % of its CPU."""
    try:
        body = _HTTP.get(f"http://127.0.0.1:{port}/metrics", params={"name[]": name},
                         headers={"Accept-Encoding": "identity"}).text
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


def free_ports(n: int) -> int:
    """First of ``n`` consecutive free TCP ports on 127.0.0.1.

    Raises:
        RuntimeError: none found after 50 tries.
    """
    for _ in range(50):
        base = stack.free_port()
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {n} consecutive free ports")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (``/proc/<pid>/stat`` utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux ``/proc/<pid>/task/<pid>/children``)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def lorong(root: Path, mq_port: int, influx_port: int, n: int, files: list[Path], devices: list[str],
           timeout_s: float, workers: int = 1) -> tuple[float, float, float, list[float], list[float], float]:
    """Publish to ``lorong ingest run --workers <workers>`` and wait until all points are in InfluxDB.

    Several workers share the stream through one ``$share`` group (own client ids and spools).

    Returns:
        (seconds publish start -> N points in InfluxDB, seconds -> N messages received,
        seconds for the publishers alone, peak RSS MB of each ingester process, RSS MB of each
        when subscribed and idle, CPU seconds all ingester processes used from publish start to
        the last point in InfluxDB). With workers, the supervisor process comes last in both lists.
    """
    exe = Path(sys.executable).with_name("lorong")
    db = f"bench_w{workers}"
    influx = InfluxClient(f"http://127.0.0.1:{influx_port}", db)
    metrics_base = free_ports(workers)
    ports = list(range(metrics_base, metrics_base + workers))
    env = {**os.environ,
           "LORONG_DATABASE_URL": f"sqlite:///{root / 'lorong.db'}", "LORONG_VAR_DIR": str(root / "var"),
           "LORONG_MQTT__PORT": str(mq_port), "LORONG_MQTT__CLIENT_ID": f"bench-w{workers}",
           "LORONG_MQTT__TOPICS": json.dumps([TOPIC_FILTER]), "LORONG_INGEST__INSTANCE": f"bench-w{workers}",
           "LORONG_INFLUX__URL": f"http://127.0.0.1:{influx_port}", "LORONG_INFLUX__DATABASE": db,
           "LORONG_INGEST__SPOOL_DIR": str(root / f"spool-w{workers}"),
           "LORONG_INGEST__METRICS_PORT": str(metrics_base)}
    log_path = root / f"ingest-w{workers}.log"
    with open(log_path, "wb") as log:
        extra = ["--workers", str(workers), "--group", f"bench{workers}"] if workers > 1 else []
        proc = subprocess.Popen([str(exe), "--log-level", "WARNING", "ingest", "run", *extra], env=env, cwd=root,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while any(metric(port, "lorong_ingest_mqtt_up") != 1.0 for port in ports):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ingester did not subscribe: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        pids = (children(proc.pid) if workers > 1 else []) + [proc.pid]
        idle = [rss_mb(pid, "VmRSS") for pid in pids]
        cpu0 = sum(cpu_s(pid) for pid in pids)
        t0 = time.monotonic()
        pub_s = publish(mq_port, files, devices, f"w{workers}", timeout_s)
        received_s = durable_s = None
        while time.monotonic() - t0 < timeout_s:
            if received_s is None:
                if sum(metric(port, "lorong_ingest_messages_received_total") or 0 for port in ports) < n:
                    time.sleep(0.1)
                    continue  # N points cannot be in InfluxDB before N messages arrived: no count query yet
                received_s = time.monotonic() - t0
            rows = influx.records('SELECT count("pm25") FROM "air_quality"')
            if rows and rows[0]["count"] >= n:
                durable_s = time.monotonic() - t0
                break
            time.sleep(0.1)
        if durable_s is None:
            raise RuntimeError(f"not all {n} points in InfluxDB within {timeout_s} s")
        rss = [rss_mb(pid) for pid in pids]
        cpu = sum(cpu_s(pid) for pid in pids) - cpu0
    finally:
        influx.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
    return durable_s, received_s if received_s is not None else durable_s, pub_s, rss, idle, cpu


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures; exit code 0 unless something broke."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=8, help="publisher processes, one per device")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker counts to measure, each with `lorong ingest run --workers N`")
    args = ap.parse_args(argv)
    n, devices = args.messages, [f"BENCH-{i:03d}" for i in range(args.devices)]
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    timeout_s = max(120.0, n / 500)
    runs: dict[int, tuple[float, float, float, list[float], list[float], float]] = {}
    with tempfile.TemporaryDirectory(prefix="lorong-bench-") as tmp:
        root = Path(tmp)
        files, size = write_payloads(root, n, devices)
        settings = Settings(database_url=f"sqlite:///{root / 'lorong.db'}")
        sessions = open_sessions(settings)
        with sessions.begin() as s:
            for d in devices:
                add_device(s, DeviceIn(id=d, kind=DeviceKind.AIR, kecamatan="Panakkukang"))
        influxd = stack.start_influxd(root / "influxd", stack.free_port())
        refs: list[tuple[float, float]] = []
        try:
            for name in ("before", *(f"w{w}" for w in counts), "after"):
                # a fresh broker each time: no queues or sessions left by the run before
                mq = stack.start_mosquitto(root / f"mosquitto-{name}", stack.free_port())
                try:
                    if name in ("before", "after"):
                        refs.append(reference(mq.port, n, files, devices, timeout_s))
                    else:
                        w = int(name[1:])
                        runs[w] = lorong(root, mq.port, influxd.port, n, files, devices, timeout_s, w)
                finally:
                    mq.stop()
        finally:
            influxd.stop()
    ref_rates = [n / ref_s for ref_s, _ in refs]
    ref_rate = sum(ref_rates) / len(ref_rates)
    ref_pub_s = sum(pub_s for _, pub_s in refs) / len(refs)

    def row(label: str, text: str) -> None:
        print(f"  {label:<46}: {text}")

    print(f"Lorong ingest throughput: {n:,} lorong-json messages at QoS 1 ({len(devices)} devices, "
          f"{size} B each, 3 readings per message), Mosquitto + InfluxDB on 127.0.0.1, {os.cpu_count()} CPUs")
    row(f"publishers alone, {len(devices)} x mosquitto_pub -q 1 -l",
        f"{n / ref_pub_s:>8,.0f} msg/s (reference run), "
        + ", ".join(f"{n / r[2]:,.0f} msg/s (--workers {w} run)" for w, r in runs.items()))
    row(f"broker -> mosquitto_sub -q 1 -C {n}", f"{ref_rate:>8,.0f} msg/s   (reference: mean of "
        + " and ".join(f"{r:,.0f}" for r in ref_rates) + ", before and after)")
    for w, (e2e_s, recv_s, _pub_s, rss, idle, cpu) in runs.items():
        e2e_rate = n / e2e_s
        ratio = e2e_rate / ref_rate
        print(f"  lorong ingest run --workers {w}")
        row("  broker -> ingester, acked (durable in spool)", f"{n / recv_s:>8,.0f} msg/s")
        row("  publish -> durable in InfluxDB", f"{e2e_rate:>8,.0f} msg/s = points/s, {3 * e2e_rate:,.0f} readings/s")
        row("  ingester CPU time per message (user + sys)", f"{cpu / n * 1e6:>8.0f} us")
        row("  end to end / reference", f"{ratio:>8.2f}         target >= {TARGET_RATIO:.2f}    "
            f"{'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
        peak = max(rss)
        row("  peak RSS (VmHWM) of the largest process", f"{peak:>8.1f} MB      target <  {TARGET_RSS_MB:.0f} MB  "
            f"{'OK' if peak < TARGET_RSS_MB else 'MISSED'}"
            + (f"  (workers {', '.join(f'{r:.0f}' for r in rss[:-1])}; supervisor {rss[-1]:.0f};"
               f" sum {sum(rss):.0f})" if len(rss) > 1 else ""))
        row("    of which at idle after start (imports)", f"{max(idle):>8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
