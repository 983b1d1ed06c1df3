"""Build the storage objects from settings (entry points call these; libraries get them passed)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from storage.db import default_city, make_engine, migrate, session_factory
from storage.influx import InfluxClient


def open_influx(settings: Settings) -> InfluxClient:
    """An :class:`InfluxClient` for ``settings.influx``."""
    cfg = settings.influx
    return InfluxClient(cfg.url, cfg.database, cfg.username,
                        cfg.password.get_secret_value() if cfg.password else None, cfg.timeout_s,
                        token=cfg.token.get_secret_value() if cfg.token else None)


def open_sessions(settings: Settings, upgrade: bool = True) -> sessionmaker[Session]:
    """Session factory for ``settings.database_url``, migrating it to the newest schema first."""
    if upgrade:
        migrate(settings.database_url, default_city=default_city(settings))
    return session_factory(make_engine(settings.database_url))
