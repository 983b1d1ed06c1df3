"""Device tests run on both SQL back ends: SQLite (embedded default) and PostgreSQL.

A real PostgreSQL 15 server (Debian's ``/usr/lib/postgresql/15/bin``) is started once per session
in a temp dir on a free loopback port, with its unix socket in that dir; as root it runs as the
``postgres`` user. Each test gets a fresh database on it.

``db_url`` here overrides the root conftest's SQLite-only fixture, so every test in this folder
that uses ``db_url``, ``sessions`` or ``make_settings`` runs once per back end.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from devices import cli
from lorong.storage import stack
from lorong.storage.db import migrate

PG_BIN = Path(os.environ.get("LORONG_PG_BIN", "/usr/lib/postgresql/15/bin"))
BACKENDS = ["sqlite", "postgresql"]
_db_counter = itertools.count()


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[int]:
    """A PostgreSQL server on 127.0.0.1:<port> (trust auth, user ``postgres``) for the session."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL is not installed in {PG_BIN}: run `make test` (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="lorong-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
    data, port = root / "data", stack.free_port()
    run = _as_postgres()
    subprocess.run([*run, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-o", opts,
                    "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
    try:
        yield port
    finally:
        subprocess.run([*run, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The SQL back end of this test run: ``sqlite`` or ``postgresql``."""
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty database on ``backend``; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'lorong.db'}"
        return
    port = request.getfixturevalue("postgres_server")
    name = f"lorong_{os.getpid()}_{next(_db_counter)}"
    admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """``empty_db_url`` migrated to the newest schema."""
    migrate(empty_db_url)
    return empty_db_url


RunCli = Callable[..., Result]


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for `lorong devices` against the test database, var dir in tmp_path, cwd tmp_path, and an
    InfluxDB URL where nothing listens (`lorong cities add` updates the daily means' queries of one that answers)."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in [n for n in os.environ if n.startswith("LORONG_")]:
        monkeypatch.delenv(name)
    return {"LORONG_DATABASE_URL": db_url, "LORONG_VAR_DIR": str(tmp_path / "var"),
            "LORONG_INFLUX__URL": f"http://127.0.0.1:{stack.free_port()}"}  # no InfluxDB: never another's


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> RunCli:
    """Invoke `lorong devices <args>` in-process (typer's CliRunner); ``input`` feeds the prompts."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli.app, list(args), env={**cli_env, **(env or {})}, input=input)

    return run
