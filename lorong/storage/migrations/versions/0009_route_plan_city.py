"""route_plans.city_id: the city a collection route plan is for (its bins, depot and day)

A plan saved before is its registry's only city's when the registry has one city; with several
(a registry that gained cities before this revision) it stays NULL: a plan of no city, shown to
tokens that see every city and, as before, to a city's token when every stop is a bin of its city.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("route_plans") as batch_op:
        batch_op.add_column(sa.Column("city_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_route_plans_city_id"), ["city_id"], unique=False)
    conn = op.get_bind()
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM cities"))]
    if len(ids) == 1:
        op.execute(sa.text("UPDATE route_plans SET city_id = :city").bindparams(city=ids[0]))


def downgrade() -> None:
    with op.batch_alter_table("route_plans") as batch_op:
        batch_op.drop_index(batch_op.f("ix_route_plans_city_id"))
        batch_op.drop_column("city_id")
