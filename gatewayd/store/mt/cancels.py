"""Withdrawing queued MTs (a cancelled mass push): ``queued -> cancelled``, final, with its history
line; a billed MT's charge goes back to its client's spend (it never reached them). An MT already
claimed (``sending``) goes on: its segments may be on the air."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import table_of
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.status import insert_history
from gatewayd.store.mt.values import ERROR_TEXT_LIMIT, MTStatusChange
from gatewayd.store.premium import credit_finals

MT_MESSAGES = table_of(MTMessage)


async def cancel_queued(
    session: AsyncSession, mt_ids: Select[int], now: datetime, *, reason: str
) -> list[MTStatusChange]:
    """Cancels the MTs among ``mt_ids`` (a select of ids) still ``queued``; their changes."""
    table = MT_MESSAGES
    detail = reason[:ERROR_TEXT_LIMIT]
    result = await session.execute(
        update(table)
        .where(table.c.id.in_(mt_ids.scalar_subquery()), table.c.status == MTStatus.QUEUED)
        .values(status=MTStatus.CANCELLED, final_at=now, updated_at=now, last_error=detail)
        .returning(table.c.id, table.c.subscriber_id, table.c.source, table.c.charge, table.c.created_at)
    )
    rows = sorted(result.all(), key=lambda row: row.id)
    changes = [MTStatusChange(row.id, MTStatus.QUEUED, MTStatus.CANCELLED, now, detail) for row in rows]
    await insert_history(session, [(c.mt_id, c.status, c.at, c.detail) for c in changes])
    await credit_finals(session, [(row, MTStatus.CANCELLED) for row in rows])
    return changes
