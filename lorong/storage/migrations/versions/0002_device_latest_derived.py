"""device_latest.derived: analytics results per device (fill rate, time-to-full, ISPU ...)

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_latest") as batch_op:
        batch_op.add_column(sa.Column("derived", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("device_latest") as batch_op:
        batch_op.drop_column("derived")
