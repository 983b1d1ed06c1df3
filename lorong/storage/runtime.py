"""Build the storage objects from settings (entry points call these; libraries get them passed).

Which database: ``database_url`` defaults to ``sqlite:///var/lorong.db``, a path relative to the
folder ``lorong`` runs in. A command run from another folder would open (and migrate) a new, empty
file there, and work on it as if it were the real one: a token created there is unknown to the API.
So :func:`open_sessions` refuses a SQLite file that does not exist yet (:class:`NoDatabase`, naming
the absolute path it looked for), and only the commands that start a deployment or add its first
devices (``stack up``, ``demo``, ``devices add``/``import``/``register``) create one, saying where
(:func:`create_database`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lorong.core.errors import ConfigError
from lorong.core.settings import Settings
from lorong.storage.db import default_city, make_engine, migrate, session_factory
from lorong.storage.influx import InfluxClient
from lorong.storage.retention import DayZones
from lorong.storage.tables import CityRow

CREATORS = "`lorong stack up`, `lorong demo` and `lorong devices add`"
"""The commands that may create a new database (named in :class:`NoDatabase`)."""


class NoDatabase(ConfigError):
    """The SQLite file of ``database_url`` does not exist, and this command does not create one."""


def open_influx(settings: Settings) -> InfluxClient:
    """An :class:`InfluxClient` for ``settings.influx``."""
    cfg = settings.influx
    return InfluxClient(cfg.url, cfg.database, cfg.username,
                        cfg.password.get_secret_value() if cfg.password else None, cfg.timeout_s,
                        token=cfg.token.get_secret_value() if cfg.token else None)


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file (relative paths resolved against the current folder);
    ``None`` for another database or an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def database_location(url: str) -> str:
    """Where ``url`` points, for people: the absolute SQLite path, or ``PostgreSQL database <db> on
    <host>:<port>`` (never the password)."""
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    parsed = make_url(url)
    return f"PostgreSQL database {parsed.database} on {parsed.host}:{parsed.port or 5432}"


def create_database(settings: Settings) -> str | None:
    """Create and migrate the database of ``settings`` if it is a SQLite file that does not exist yet.

    Returns:
        the new database's location (:func:`database_location`) when one was created, else ``None``.

    Raises:
        ConfigError: the file or its folder cannot be created (a path under a file, no permission, a
            read-only disk); the message names the path and ``LORONG_DATABASE_URL``.
    """
    path = sqlite_file(settings.database_url)
    if path is None or path.exists():
        return None
    try:
        migrate(settings.database_url, default_city=default_city(settings))
    except OSError as exc:  # creating the folder or the empty file, before SQLite opens it
        raise ConfigError(f"cannot create the database {path}: {exc.strerror or exc}: check LORONG_DATABASE_URL") \
            from exc
    return database_location(settings.database_url)


def check_database(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist.

    Raises:
        NoDatabase: the file is missing; the message names its absolute path, the URL, and what to do.
    """
    path = sqlite_file(url)
    if path is None or path.exists():
        return
    given = Path(make_url(url).database or "")
    if given.is_absolute():
        raise NoDatabase(f"no Lorong database at {path} (LORONG_DATABASE_URL {url}): check LORONG_DATABASE_URL; "
                         f"{CREATORS} create a new one")
    raise NoDatabase(f"no Lorong database at {path} (LORONG_DATABASE_URL {url}, relative to the current folder): "
                     f"run lorong in the folder that holds {given.parts[0] if len(given.parts) > 1 else given}"
                     f"{'/' if len(given.parts) > 1 else ''}, or set LORONG_DATABASE_URL; {CREATORS} create a new one")


def open_sessions(settings: Settings, upgrade: bool = True) -> sessionmaker[Session]:
    """Session factory for ``settings.database_url``, migrating it to the newest schema first.

    Raises:
        NoDatabase: a SQLite file that does not exist (see the module docstring; the commands that
            may create one call :func:`create_database` first).
    """
    check_database(settings.database_url)
    if upgrade:
        migrate(settings.database_url, default_city=default_city(settings))
    return session_factory(make_engine(settings.database_url))


def day_zones(settings: Settings) -> DayZones:
    """Whose local days the daily means follow: every registered city's ``timezone``, and
    ``analytics.timezone`` for points of no known city (:mod:`lorong.storage.retention`).

    A SQLite registry that does not exist yet (``lorong stack up`` on a new install) has no cities:
    one zone, ``analytics.timezone``, until it does (the database is not created here).

    Raises:
        ConfigError: the registry cannot be read (the message names it and the database's error).
    """
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        return DayZones(settings.analytics.timezone)
    try:
        sessions = open_sessions(settings)
        try:
            with sessions() as s:
                cities = {c.id: c.timezone for c in s.scalars(select(CityRow))}
        finally:
            sessions.kw["bind"].dispose()
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot read the cities of the registry {database_location(settings.database_url)}: "
                          f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    return DayZones(settings.analytics.timezone, cities)
