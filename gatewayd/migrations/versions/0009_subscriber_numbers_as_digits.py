"""Subscriber numbers as E.164 digits without '+' in every table: the parts of long MOs waiting for
their message held theirs with '+' (``mo_parts.msisdn``), while subscribers, MOs and MTs held the
digits. The daemon now keeps numbers as digits from the SMPP edge on; parts stored by an earlier
version are rewritten so that the MO assembled from them finds its subscriber. (Their set and
content keys need no change: those digest the number in E.164 form, as before.)

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-12 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE mo_parts SET msisdn = substr(msisdn, 2) WHERE msisdn LIKE '+%'")


def downgrade() -> None:
    op.execute("UPDATE mo_parts SET msisdn = '+' || msisdn WHERE msisdn NOT LIKE '+%'")
