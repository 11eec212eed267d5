"""Several daemons, one service (issue 15): ``daemons`` (each instance's heartbeat and status) and
``bind_leases`` (the owner of each bind slot). Additive: daemons of release N neither read nor
write them and keep working while N+1 migrates.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daemons",
        sa.Column("instance", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopping", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_daemons")),
    )
    op.create_table(
        "bind_leases",
        sa.Column("slot", sa.String(length=80), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_bind_leases")),
    )


def downgrade() -> None:
    op.drop_table("bind_leases")
    op.drop_table("daemons")
