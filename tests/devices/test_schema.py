"""Migrations build the schema from an empty database, and the models match them, on both back ends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from lorong.storage.db import alembic_config, make_engine, migrate
from lorong.storage.tables import Base


def test_migrations_up_from_empty(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    migrate(empty_db_url)
    engine = make_engine(empty_db_url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        current = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(empty_db_url)).get_current_head()
    assert current == head
    assert set(Base.metadata.tables) <= tables
    assert {"devices", "device_credentials"} <= tables


def test_models_match_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []
