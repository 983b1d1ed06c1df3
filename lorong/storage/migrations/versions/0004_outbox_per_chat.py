"""notification_outbox: channel names up to 64 characters (one channel per Telegram chat,
``telegram:<name>``) and ``not_before`` (a row held back by quiet hours)

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notification_outbox") as batch_op:
        batch_op.alter_column("channel", existing_type=sa.String(length=16), type_=sa.String(length=64),
                              existing_nullable=False)
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_outbox") as batch_op:
        batch_op.drop_column("not_before")
        batch_op.alter_column("channel", existing_type=sa.String(length=64), type_=sa.String(length=16),
                              existing_nullable=False)
