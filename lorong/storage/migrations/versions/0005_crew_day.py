"""The crew's day: devices.landmark, collections reported by a person, idempotency keys

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("landmark", sa.String(length=128), nullable=False, server_default=""))
    with op.batch_alter_table("collections") as batch_op:
        batch_op.alter_column("level_before", existing_type=sa.Float(), nullable=True)
        batch_op.alter_column("level_after", existing_type=sa.Float(), nullable=True)
        batch_op.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="sensor"))
        batch_op.add_column(sa.Column("actor", sa.String(length=64), nullable=True))
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_id", "key", name="uq_idempotency_token_key"),
    )
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("collections") as batch_op:
        batch_op.drop_column("actor")
        batch_op.drop_column("source")
        batch_op.alter_column("level_after", existing_type=sa.Float(), nullable=False)
        batch_op.alter_column("level_before", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("landmark")
