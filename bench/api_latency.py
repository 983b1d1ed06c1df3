"""API latency of ``GET /bins`` and ``GET /alerts`` under an open-loop load, on loopback only.

Workload: a fresh SQLite database with 5,000 bins in Makassar's 15 kecamatan, each with a
``device_latest`` row (fill level drawn uniformly 0..1, fixed seed) and, for bins at or above
0.8, an active ``bin_full`` alert (about 1,000), plus 2,000 cleared alerts; one officer token.
The API runs as its own process (``python -m lorong.cli api``, one uvicorn worker) so the load
generator does not share its interpreter. Answers come from SQL (``devices`` joined with
``device_latest``); nothing here touches InfluxDB.

Load: open loop, as a real crowd of phones behaves: request *i* is sent at ``t0 + i / rate``
whether or not earlier ones have returned, so a slow server is not hidden by a waiting client
(coordinated omission). Latency is measured from the scheduled send time to the last byte of the
response. Each endpoint gets its own phase (warm-up first, not counted); ~66 query variants rotate,
so each is asked ~3 times a second and the API's one-second page cache (:mod:`api.pages`) answers
about two of three: ``/bins`` (100 fullest), ``/bins?kecamatan=K`` (15), ``/bins?min_level=0.8``,
``/bins?offset=100..4900`` (49); ``/alerts`` (first 100 active), ``/alerts?kecamatan=K`` (15),
``/alerts?status=any&limit=50`` (SQL), two more filters, ``/alerts?limit=51..100`` (50).

Target: p99 under 50 ms at 200 requests/s. It is printed, not asserted: the machine may be shared.
Besides latency it prints the server's CPU time per request (``/proc/<pid>/stat``), which says how
many requests a second one free core could answer (1000 / that number), whatever else is running.

Usage::

    .venv/bin/python bench/api_latency.py [--bins 5000] [--rate 200] [--duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.alerts import AlertBook  # noqa: E402
from api.auth import create_token  # noqa: E402
from lorong.core.model import to_ms, utcnow  # noqa: E402
from lorong.storage import stack  # noqa: E402
from lorong.storage.db import make_engine, migrate, session_factory  # noqa: E402
from lorong.storage.tables import DeviceLatestRow, DeviceRow  # noqa: E402

KECAMATAN = ["Mariso", "Mamajang", "Tamalate", "Rappocini", "Makassar", "Ujung Pandang", "Wajo", "Bontoala",
             "Ujung Tanah", "Kepulauan Sangkarrang", "Tallo", "Panakkukang", "Manggala", "Biringkanaya",
             "Tamalanrea"]
TARGET_P99_MS = 50.0


def seed(url: str, bins: int, rng: random.Random) -> str:
    """Fill the database at ``url``; return an officer token."""
    migrate(url)
    sessions = session_factory(make_engine(url))
    now = utcnow()
    with sessions.begin() as s:
        token = create_token(s, "bench", "officer")[1]
        for i in range(bins):
            kec = KECAMATAN[i % len(KECAMATAN)]
            device_id = f"MKS-BIN-{i:05d}"
            s.add(DeviceRow(id=device_id, kind="bin", model="EM310-UDL", kecamatan=kec, street=f"Jl. Lorong {i}",
                            lat=-5.2 + rng.random() * 0.15, lon=119.38 + rng.random() * 0.12, depth_mm=1000.0,
                            blind_zone_mm=150.0, report_interval_s=600, status="active", created_at=now,
                            updated_at=now))
            level = round(rng.random(), 4)
            seen = now - timedelta(seconds=rng.randrange(600))
            s.add(DeviceLatestRow(device_id=device_id, ts=seen,
                                  metrics={"fillingLevel": [level, to_ms(seen)], "batteryLevel": [0.9, to_ms(seen)]},
                                  derived={"fill_rate_per_h": 0.03,
                                           "full_at": (now + timedelta(hours=(0.8 - level) / 0.03)).isoformat()}))
        s.flush()
        book = AlertBook(s)
        for i in range(2000):
            at = now - timedelta(days=2, minutes=i)
            row, _ = book.raise_(f"MKS-BIN-{i % bins:05d}", "bin_full", "major", at, {"fillingLevel": 0.85},
                                 KECAMATAN[i % len(KECAMATAN)])
            book.clear(row.id, at + timedelta(hours=3), "system", "emptied")
        for row in s.query(DeviceLatestRow).all():
            level = row.metrics["fillingLevel"][0]
            if level >= 0.8:
                book.raise_(row.device_id, "bin_full", "critical" if level >= 0.95 else "major",
                            now - timedelta(minutes=rng.randrange(600)), {"fillingLevel": level},
                            KECAMATAN[int(row.device_id[-5:]) % len(KECAMATAN)])
    return token


class Http1Pool:
    """A minimal keep-alive HTTP/1.1 GET client on loopback (a fraction of httpx's CPU per request, so
    the load generator disturbs the server it measures as little as possible on a 2-core machine).

    Responses must carry ``Content-Length`` (every JSON answer of the API does, gzip included).
    """

    def __init__(self, port: int, headers: dict[str, str], max_connections: int = 256) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def get(self, path: str) -> int:
        """GET ``path``; returns the status once the whole body is read.

        A kept-alive connection that the server closed while idle (uvicorn closes them after 5 s) is
        dropped and the request sent once more on a new one, as browsers do.

        Raises:
            ConnectionError: the server closed the connection or answered without Content-Length.
        """
        async with self.slots:
            while self.idle:
                reader, writer = self.idle.pop()
                try:
                    return await self._exchange(reader, writer, path)
                except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            return await self._exchange(reader, writer, path)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.head}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                           if k.lower() == "content-length"), None)
            if length is None:
                raise ConnectionError(f"no Content-Length in the answer to {path}")
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        """Close idle connections."""
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def phase(client: Http1Pool, paths: list[str], rate: float, duration_s: float
                ) -> tuple[list[float], Counter[str]]:
    """Open-loop load: one request every ``1 / rate`` s for ``duration_s``; latencies in ms and errors by kind."""
    n = int(rate * duration_s)
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def one(i: int, scheduled: float) -> None:
        try:
            status = await client.get(paths[i % len(paths)])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            return
        if status != 200:
            errors[f"HTTP {status}"] += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000.0)

    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return latencies, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc/<pid>/stat``), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(port: int, server_pid: int, token: str, rate: float, duration_s: float
              ) -> list[tuple[str, list[float], Counter[str], float]]:
    """Warm up, then one phase per endpoint; per phase: latencies, errors, server CPU seconds."""
    kecs = [k.replace(" ", "%20") for k in KECAMATAN]
    endpoints = {
        "/bins": ["/bins", *[f"/bins?kecamatan={k}" for k in kecs], "/bins?min_level=0.8",
                  *[f"/bins?offset={100 * k}" for k in range(1, 50)]],
        "/alerts": ["/alerts", *[f"/alerts?kecamatan={k}" for k in kecs], "/alerts?status=any&limit=50",
                    "/alerts?severity=critical", "/alerts?acknowledged=false&limit=20",
                    *[f"/alerts?limit={k}" for k in range(51, 101)]],
    }
    client = Http1Pool(port, {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"})
    out = []
    try:
        for name, paths in endpoints.items():
            await phase(client, paths, rate / 2, 3.0)  # warm-up: connections, snapshot, token cache
            cpu = cpu_seconds(server_pid)
            lat, err = await phase(client, paths, rate, duration_s)
            out.append((name, lat, err, cpu_seconds(server_pid) - cpu))
    finally:
        client.close()
    return out


def main() -> None:
    """Seed, serve, load, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per endpoint")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorong-api-bench-") as tmp:
        url = f"sqlite:///{tmp}/lorong.db"
        t = time.perf_counter()
        token = seed(url, args.bins, random.Random(args.seed))
        print(f"seeded {args.bins} bins in {time.perf_counter() - t:.1f} s")
        load_before = os.getloadavg()
        port = stack.free_port()
        env = {**os.environ, "LORONG_DATABASE_URL": url, "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}"}
        server = subprocess.Popen([sys.executable, "-m", "lorong.cli", "--log-level", "WARNING", "api", "--host",
                                   "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env)
        try:
            stack.wait_for_port(port, 30)
            results = asyncio.run(run(port, server.pid, token, args.rate, args.duration))
        finally:
            server.terminate()
            server.wait(timeout=10)
    load_after = os.getloadavg()
    print(f"open loop, {args.rate:.0f} req/s for {args.duration:.0f} s per endpoint, one uvicorn worker, "
          f"{os.cpu_count()} CPUs; 1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          "(other work on the machine competes for the CPUs)")
    cols = ("requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "cpu ms/r")
    print(f"{'endpoint':10} " + " ".join(f"{c:>8}" for c in cols) + "  target")
    for name, lat, err, cpu_s in results:
        failed = sum(err.values())
        if not lat:
            print(f"{name:10} no successful requests ({dict(err)})")
            continue
        p99 = pct(lat, 0.99)
        verdict = "ok" if p99 < TARGET_P99_MS and not failed else "MISSED"
        per_request_ms = cpu_s * 1000.0 / (len(lat) + failed)
        print(f"{name:10} {len(lat) + failed:8d} {failed:8d} {statistics.median(lat):8.1f} {pct(lat, 0.90):8.1f} "
              f"{p99:8.1f} {max(lat):8.1f} {per_request_ms:8.2f}  p99 < {TARGET_P99_MS:.0f} ms: {verdict}"
              + (f" (errors: {dict(err)})" if failed else ""))


if __name__ == "__main__":
    main()
