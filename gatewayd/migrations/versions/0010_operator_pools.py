"""Operator pools: each conversation keeps the pool and call-centre flag its MO route decided, and
operators belong to pools.

``conversations.operator_pool`` is written when the MO pipeline opens a conversation (the MO
routing table's decision, ``gatewayd.routes``); conversations opened before this revision have none
and count as the default pool's. ``conversations.callcentre`` keeps the route's call-centre flag for
the diversion to come (issue 12). ``account_pools`` lists the pools an operator answers; an
operator with no row answers the default pool (see ``gatewayd.assignment``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operator_pool", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("callcentre", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "account_pools",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_pools_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "pool", name=op.f("pk_account_pools")),
    )


def downgrade() -> None:
    op.drop_table("account_pools")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("callcentre")
        batch_op.drop_column("operator_pool")
