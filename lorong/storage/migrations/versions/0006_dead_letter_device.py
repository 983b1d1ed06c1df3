"""dead_letters.device_id: the sender of each rejected message, so rules count per device without
reading topic layouts

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_dead_letters_device_id"), ["device_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_device_id"))
        batch_op.drop_column("device_id")
