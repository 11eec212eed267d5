"""MO path hardening: parts of long MOs stored on their own, answers not known delivered, raw octets.

* ``mo_parts``: each part of a long MO is stored (and answered) in its own group commit; the whole
  MO is assembled from the stored parts, whichever bind or daemon run they came through.
* ``mo_unconfirmed``: one row per group of MOs (one commit, one bind connection) whose
  deliver_sm_resp is not known to have reached the SMSC; deleted once it is. A later MO with the
  same content is a redelivery only of an MO whose row is still there, so ``mo_messages.dedup_key``
  (now the content alone, no time bucket) is no longer unique: the same text twice is two MOs.
* ``mo_messages.raw``: the octets as the SMSC sent them when the stored text cannot say everything
  they do (NUL and other control characters, undecodable octets, 8-bit data).

Keys stored before this revision carry a time bucket and match nothing new: a redelivery of an MO
stored just before the upgrade is stored again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WAITING = sa.text("mo_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("answer_id", _ID, nullable=True))
        batch_op.drop_constraint("uq_mo_messages_dedup_key", type_="unique")
        batch_op.create_index("ix_mo_messages_dedup_key", ["dedup_key"], unique=False)
    op.create_table(
        "mo_unconfirmed",
        sa.Column("id", _ID, nullable=False),
        sa.Column("bind_name", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mo_unconfirmed")),
        # deleted ids are never reused on SQLite either: an old MO must not point at a new answer
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("mo_unconfirmed", schema=None) as batch_op:
        batch_op.create_index("ix_mo_unconfirmed_created_at", ["created_at"], unique=False)
    op.create_table(
        "mo_parts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("set_key", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=32), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("bind_name", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("msisdn", sa.String(length=20), nullable=False),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("part_no", sa.SmallInteger(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer_id", _ID, nullable=True),
        sa.Column("mo_id", _ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mo_parts")),
    )
    with op.batch_alter_table("mo_parts", schema=None) as batch_op:
        batch_op.create_index("ix_mo_parts_dedup_key", ["dedup_key"], unique=False)
        batch_op.create_index("ix_mo_parts_received_at", ["received_at"], unique=False)
        batch_op.create_index(
            "ix_mo_parts_waiting_set_key",
            ["set_key"],
            unique=False,
            postgresql_where=_WAITING,
            sqlite_where=_WAITING,
        )


def downgrade() -> None:
    op.drop_table("mo_parts")
    op.drop_table("mo_unconfirmed")
    # the same text stored twice has the same key now: the row id makes each one unique again
    op.execute("UPDATE mo_messages SET dedup_key = dedup_key || ':' || id WHERE length(dedup_key) = 32")
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_mo_messages_dedup_key")
        batch_op.create_unique_constraint("uq_mo_messages_dedup_key", ["dedup_key"])
        batch_op.drop_column("answer_id")
        batch_op.drop_column("raw")
