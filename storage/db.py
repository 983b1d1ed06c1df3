"""SQL database access: engine creation and Alembic migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from storage.files import private_dir, private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (any SQLAlchemy URL).

    For SQLite the parent directory (0700) and the file (0600) are created, foreign keys are enforced and WAL journaling
    is turned on, so the ingester, the analytics job and the API can share one file. Commits
    are synced (``synchronous=FULL``; in WAL mode NORMAL may lose the last commits on a power
    loss, SQLite docs "PRAGMA synchronous"): the ingester acknowledges a rejected message to the
    broker once its dead letter is committed, exactly as it does for spooled points. A write
    waits up to 30 s for another process's write lock (``sqlite:///x.db?timeout=5`` sets another
    time in seconds).
    """
    kwargs: dict[str, Any] = {}
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


def alembic_config(url: str) -> Config:
    """Alembic configuration that targets ``url`` with Lorong's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (creates every table on an empty one)."""
    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    command.upgrade(alembic_config(url), revision)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
