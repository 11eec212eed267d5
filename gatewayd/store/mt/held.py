"""What quiet hours hold back, and the rule that finds it: a push (or the premium notice held with it)
still ``queued``, never tried, due later. A client who writes in their quiet hours is awake, so their
MO makes such MTs due at once (``queue.release_held``); on PostgreSQL the MO statement asks whether a
writer has any (``_pg_ingest``), so that a batch whose writers have none sends no release statement.
The rule is written twice, for SQLAlchemy Core and for the PostgreSQL statements' text: both here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_

from gatewayd.store.enums import MTKind, MTStatus

#: What quiet hours hold back: an operator's push, and the premium notices held with it.
HELD_KINDS = (MTKind.PUSH, MTKind.SYSTEM)
#: The history line of a held push released early.
RELEASED = "released: the client wrote, awake before their quiet hours ended"


def held(mt_messages: Table, now: datetime) -> ColumnElement[bool]:
    """The rule on ``mt_messages`` rows, as of ``now``."""
    columns = mt_messages.c
    return and_(
        columns.status == MTStatus.QUEUED,
        columns.kind.in_(HELD_KINDS),
        columns.attempts == 0,
        columns.next_attempt_at > now,
    )


def held_sql(mt: str, now: str) -> str:
    """The rule as a PostgreSQL condition on the ``mt_messages`` row named ``mt``, as of the
    timestamptz expression ``now``."""
    kinds = ", ".join(f"'{kind.value}'" for kind in HELD_KINDS)
    return (
        f"{mt}.status = '{MTStatus.QUEUED.value}' AND {mt}.kind IN ({kinds})"
        f" AND {mt}.attempts = 0 AND {mt}.next_attempt_at > {now}"
    )
