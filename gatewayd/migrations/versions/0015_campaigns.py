"""Mass push campaigns (issue 13, manual 1.6): ``campaigns`` and ``campaign_recipients``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("last_pushes", sa.Integer(), nullable=False),
        sa.Column("include_new", sa.Boolean(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=True),
        sa.Column("carrier", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("active_days", sa.Integer(), nullable=True),
        sa.Column("tps", sa.Integer(), nullable=False),
        sa.Column("ignore_quiet_hours", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "running",
                "paused",
                "finished",
                "cancelled",
                name="campaignstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        *(
            _counter(name)
            for name in (
                "total",
                "pending",
                "queued",
                "sent",
                "delivered",
                "failed",
                "refused",
                "cancelled",
                "skipped",
            )
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index("ix_campaigns_status_scheduled_at", ["status", "scheduled_at"], unique=False)
    op.create_table(
        "campaign_recipients",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("subscriber_id", ID, nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "queued",
                "sent",
                "delivered",
                "failed",
                "refused",
                "cancelled",
                "skipped",
                name="recipientstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("mt_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint("campaign_id", "subscriber_id", name="uq_campaign_recipients_campaign_id"),
    )
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_recipients_pending",
            ["campaign_id", "id"],
            unique=False,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index(
            "ix_campaign_recipients_open",
            ["campaign_id", "mt_id"],
            unique=False,
            postgresql_where=sa.text("state IN ('queued', 'sent')"),
            sqlite_where=sa.text("state IN ('queued', 'sent')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_recipients_open")
        batch_op.drop_index("ix_campaign_recipients_pending")
    op.drop_table("campaign_recipients")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_status_scheduled_at")
    op.drop_table("campaigns")
