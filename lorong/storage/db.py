"""SQL database access: engine creation and Alembic migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.errors import DatabaseUnavailable
from lorong.storage.files import private_dir, private_file

if TYPE_CHECKING:
    from lorong.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def json_loads(text: str | bytes) -> Any:
    """JSON column value from its text: ``orjson`` (a third of ``json.loads``' time on the 55,000
    small documents one analytics run of 20,000 bins reads), ``json.loads`` for a document
    ``orjson`` refuses (a NaN that an older release stored)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (any SQLAlchemy URL).

    For SQLite the parent directory (0700) and the file (0600) are created, foreign keys are enforced and WAL journaling
    is turned on, so the ingester, the analytics job and the API can share one file. Commits
    are synced (``synchronous=FULL``; in WAL mode NORMAL may lose the last commits on a power
    loss, SQLite docs "PRAGMA synchronous"): the ingester acknowledges a rejected message to the
    broker once its dead letter is committed, exactly as it does for spooled points. A write
    waits up to 30 s for another process's write lock (``sqlite:///x.db?timeout=5`` sets another
    time in seconds).

    For a server (PostgreSQL) each pooled connection is tested before use (``pool_pre_ping``, one
    round trip): after a restart or a failover the pool holds connections to a server that is
    gone, and without the test the first use of each fails. A connection that fails in use makes
    SQLAlchemy drop the whole pool, so the next use connects anew.

    JSON columns are read with :func:`json_loads`.
    """
    kwargs: dict[str, Any] = {"json_deserializer": json_loads}
    if not url.startswith("sqlite"):
        kwargs["pool_pre_ping"] = True
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:":
            private_dir(Path(path).parent)
            private_file(Path(path))
        kwargs["connect_args"] = {"check_same_thread": False}
        if "timeout=" not in url.partition("?")[2]:
            kwargs["connect_args"]["timeout"] = 30
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    return engine


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database did not answer, so the same work may succeed later:
    SQLAlchemy's :class:`~sqlalchemy.exc.OperationalError` (server down or restarting, connection
    refused or cut, SQLite busy: for SQLite only the result codes of :data:`SQLITE_UNAVAILABLE`) or
    a DBAPI error that invalidated the connection (PEP 249)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is None or code & 0xFF in SQLITE_UNAVAILABLE


SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 13, 14, 15})
"""SQLite's primary result codes of a database that may answer later: SQLITE_BUSY, SQLITE_LOCKED,
SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL (https://www.sqlite.org/rescode.html).
Its other errors the sqlite3 module also raises as ``OperationalError`` (SQLITE_ERROR: "malformed
JSON", "no such table") are faults of the query or the data: retrying changes nothing."""


PG_LOCK_NOT_AVAILABLE = "55P03"
"""SQLSTATE of PostgreSQL's ``lock_not_available``, what ``lock_timeout`` raises (PostgreSQL 15
documentation, Appendix A, "PostgreSQL Error Codes")."""


def is_lock(exc: BaseException) -> bool:
    """True when ``exc`` (a SQLAlchemy error or the driver's own) says another connection holds the
    lock: PostgreSQL SQLSTATE :data:`PG_LOCK_NOT_AVAILABLE`, or SQLite's ``SQLITE_BUSY``, which the
    sqlite3 module reports only as the message "database is locked" (``sqlite_errorname``
    ``SQLITE_BUSY`` on Python 3.11)."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) == PG_LOCK_NOT_AVAILABLE:  # psycopg 3
        return True
    if getattr(orig, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return True
    return type(orig).__module__ == "sqlite3" and "database is locked" in str(orig)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A :class:`DatabaseUnavailable` for ``exc`` (see :func:`is_unavailable`), with the driver's
    first line (no SQL statement, no parameters) and ``locked`` set from :func:`is_lock`."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return DatabaseUnavailable(f"the database is not answering ({type(orig).__name__}: {first[:200]})",
                               locked=is_lock(exc))


def alembic_config(url: str) -> Config:
    """Alembic configuration that targets ``url`` with Lorong's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head", default_city: Mapping[str, str] | None = None) -> None:
    """Upgrade the database at ``url`` to ``revision`` (creates every table on an empty one).

    Args:
        url: SQLAlchemy URL.
        revision: Alembic revision to reach.
        default_city: ``{"id", "name", "timezone"}`` of the city that migration 0008 creates and gives
            every existing device (:func:`default_city` of the settings); default Makassar.
    """
    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    cfg = alembic_config(url)
    if default_city:
        cfg.attributes["default_city"] = dict(default_city)
    command.upgrade(cfg, revision)


def default_city(settings: Settings) -> dict[str, str]:
    """The deployment's own city for :func:`migrate`: ``city.id``, ``city.name``, ``analytics.timezone``."""
    return {"id": settings.city.id, "name": settings.city.name, "timezone": settings.analytics.timezone}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
