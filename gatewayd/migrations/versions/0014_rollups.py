"""The reports' hourly rollups (issue 13, manual 1.4): ``traffic_hourly``, ``operator_hourly`` and
``operator_first_responses``, kept by the pipelines as traffic is stored. An existing database gets its
figures with ``gatewayd reports rebuild`` after this upgrade.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "traffic_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *(
            _counter(name)
            for name in ("mo", "mt", "mt_delivered", "mt_failed", "mt_refused", "opt_outs", "new_clients")
        ),
        sa.PrimaryKeyConstraint(
            "hour", "service", "short_code", "carrier", "country", "shard", name=op.f("pk_traffic_hourly")
        ),
    )
    op.create_table(
        "operator_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operator_id", ID_TYPE, nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *(_counter(name) for name in ("conversations", "mos_answered", "mts_sent", "mts_delivered")),
        sa.PrimaryKeyConstraint("hour", "operator_id", "shard", name=op.f("pk_operator_hourly")),
    )
    op.create_table(
        "operator_first_responses",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operator_id", ID_TYPE, nullable=False),
        sa.Column("over_s", sa.SmallInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        _counter("replies"),
        sa.PrimaryKeyConstraint(
            "hour", "operator_id", "over_s", "shard", name=op.f("pk_operator_first_responses")
        ),
    )


def downgrade() -> None:
    op.drop_table("operator_first_responses")
    op.drop_table("operator_hourly")
    op.drop_table("traffic_hourly")
