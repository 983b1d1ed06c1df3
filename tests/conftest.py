"""Shared fixtures: real mosquitto and influxd on free loopback ports, a fresh SQL database.

Missing binaries fail the run (never a quiet skip): `make test` installs them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.settings import InfluxSettings, IngestSettings, MqttSettings, Settings
from lorong.storage import stack
from lorong.storage.db import make_engine, migrate, session_factory
from lorong.storage.influx import InfluxClient

DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).parent / "artifacts"


FIRST = ("tests/analytics/test_standard_scenario.py",)
"""Files collected first. The standard scenario takes several minutes, a quarter of the suite: under
``make test`` (``-n 2 --dist loadfile``, pytest-xdist) the first worker starts it at once while the
other worker takes the rest, instead of ending the run with one worker busy and the other idle."""


def pytest_configure(config: pytest.Config) -> None:
    """Give SIGINT back its default action (KeyboardInterrupt) when the run started with it ignored.

    A shell starts a background job (``make test &``, a runner's detached step) with SIGINT ignored, every
    child inherits that through exec, and the tests that press Ctrl-C on a child (``lorong sim``, ``make
    demo``) then wait for an exit that never comes. A handled signal is reset to its default at exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of :data:`FIRST` to the front, keeping every other test in its order."""
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))


def _require(binary: str) -> None:
    if not (shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")):
        pytest.fail(f"{binary} is not installed: run `make test` (it installs Debian's packages)")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Service]:
    """A Mosquitto 2 broker on a free 127.0.0.1 port, for the whole session."""
    _require("mosquitto")
    svc = stack.start_mosquitto(tmp_path_factory.mktemp("mosquitto"), stack.free_port())
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Service]:
    """An InfluxDB 1.x server on a free 127.0.0.1 port, for the whole session."""
    _require("influxd")
    svc = stack.start_influxd(tmp_path_factory.mktemp("influxd"), stack.free_port())
    yield svc
    svc.stop()


_db_counter = itertools.count()


@pytest.fixture
def influx(influxd: stack.Service) -> Iterator[InfluxClient]:
    """A client on a fresh, empty database of the session's influxd."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    client = InfluxClient(f"http://127.0.0.1:{influxd.port}", name)
    client.create_database()
    yield client
    client.command(f'DROP DATABASE "{name}"')
    client.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite database in the test's temp dir."""
    url = f"sqlite:///{tmp_path / 'lorong.db'}"
    migrate(url)
    return url


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    """Session factory on :func:`db_url`."""
    return session_factory(make_engine(db_url))


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    """Build :class:`Settings` pointing at the test broker/influx/database; kwargs override."""

    def build(mqtt_port: int | None = None, influx: InfluxClient | None = None, **overrides: object) -> Settings:
        base: dict[str, object] = {
            "var_dir": tmp_path / "var",
            "database_url": db_url,
            "ingest": IngestSettings(spool_dir=tmp_path / "spool", flush_interval_s=0.05),
        }
        if mqtt_port is not None:
            base["mqtt"] = MqttSettings(port=mqtt_port, client_id=f"lorong-test-{next(_db_counter)}")
        if influx is not None:
            base["influx"] = InfluxSettings(url=influx.url, database=influx.database)
        base.update(overrides)
        return Settings.model_validate(base)

    return build
