"""Fixtures for the storage tests: an influxd whose retention service checks every second."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lorong.storage import stack
from lorong.storage.influx import InfluxClient

RETENTION_CHECK = '[retention]\n  enabled = true\n  check-interval = "1s"\n'
"""influxd's retention service checks every 30 min by default (``[retention] check-interval``)."""


@pytest.fixture(scope="module")
def influxd_fast_retention(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An influxd on a free 127.0.0.1 port (the stack's config plus a 1 s retention check); yields
    the HTTP port."""
    exe = shutil.which("influxd") or shutil.which("influxd", path="/usr/sbin:/usr/bin")
    if not exe:
        pytest.fail("influxd is not installed: run `make test` (it installs Debian's packages)")
    workdir: Path = tmp_path_factory.mktemp("influxd-retention")
    port = stack.free_port()
    conf = stack.influxd_conf(workdir, port, stack.free_port())
    conf.write_text(conf.read_text() + RETENTION_CHECK)
    with open(workdir / "influxd.log", "ab") as out:
        proc = subprocess.Popen([exe, "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=0.5).status_code == 204:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"influxd did not start: {(workdir / 'influxd.log').read_text()[-2000:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_n = itertools.count()


@pytest.fixture
def db(influxd_fast_retention: int) -> Iterator[InfluxClient]:
    """A client on a database name not used yet (created by the code under test)."""
    client = InfluxClient(f"http://127.0.0.1:{influxd_fast_retention}", f"ret{next(_n)}")
    yield client
    client.command(f'DROP DATABASE "{client.database}"')
    client.close()
