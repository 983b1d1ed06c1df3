"""notification_outbox: alert changes waiting for MQTT / webhook delivery (transactional outbox)

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = "sent_at IS NULL AND failed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notification_outbox") as batch_op:
        batch_op.create_index("ix_notification_outbox_pending", ["channel", "id"], unique=False,
                              sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))
        batch_op.create_index(batch_op.f("ix_notification_outbox_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification_outbox") as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_outbox_sent_at"))
        batch_op.drop_index("ix_notification_outbox_pending", sqlite_where=sa.text(PENDING),
                            postgresql_where=sa.text(PENDING))
    op.drop_table("notification_outbox")
