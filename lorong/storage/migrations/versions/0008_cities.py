"""Cities: a cities table, devices.city_id, alerts.city_id and api_tokens.city_id

An existing registry is one city's: the city named in the settings (``LORONG_CITY__ID`` and
``__NAME``, with ``LORONG_ANALYTICS__TIMEZONE`` as its zone; handed over by :func:`lorong.storage.db.migrate`)
is created, and every device and alert joins it. Its kecamatan centroids and map centre are the mean
coordinates of its devices. Existing tokens see every city (``city_id`` NULL), as they did.

``devices.city_id`` is added with the default city as its server default and no foreign key:
SQLite cannot add a REFERENCES column with a default, and rebuilding ``devices`` would cascade
into ``device_credentials``; the registry checks the city instead (:mod:`devices.cities`).

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DEFAULT_CITY = {"id": "makassar", "name": "Makassar", "timezone": "Asia/Makassar"}
"""The city of a registry migrated without settings (the ``alembic`` command line)."""


def _default_city() -> dict[str, str]:
    given = context.config.attributes.get("default_city") or {}
    return {**DEFAULT_CITY, **given}


def upgrade() -> None:
    city = _default_city()
    cities = op.create_table(
        "cities",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("centre_lat", sa.Float(), nullable=True),
        sa.Column("centre_lon", sa.Float(), nullable=True),
        sa.Column("kecamatan", sa.JSON(), nullable=False),
        sa.Column("analytics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT kecamatan, lat, lon FROM devices WHERE lat IS NOT NULL AND lon IS NOT NULL"))
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    every: list[tuple[float, float]] = []
    for kecamatan, lat, lon in rows:
        every.append((lat, lon))
        if kecamatan:
            points[kecamatan].append((lat, lon))
    centroids = {k: [round(sum(p[0] for p in v) / len(v), 6), round(sum(p[1] for p in v) / len(v), 6)]
                 for k, v in sorted(points.items())}
    centre = [sum(p[i] for p in every) / len(every) for i in (0, 1)] if every else [None, None]
    op.bulk_insert(cities, [{"id": city["id"], "name": city["name"], "timezone": city["timezone"],
                             "centre_lat": centre[0], "centre_lon": centre[1], "kecamatan": centroids,
                             "analytics": {}, "created_at": datetime.now(UTC)}])
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("city_id", sa.String(length=32), nullable=False,
                                      server_default=city["id"]))
        batch_op.create_index(batch_op.f("ix_devices_city_id"), ["city_id"], unique=False)
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("city_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.add_column(sa.Column("city_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_alerts_city_id"), ["city_id"], unique=False)
    op.execute(sa.text("UPDATE alerts SET city_id = :city").bindparams(city=city["id"]))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_city_id"))
        batch_op.drop_column("city_id")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("city_id")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_city_id"))
        batch_op.drop_column("city_id")
    op.drop_table("cities")
