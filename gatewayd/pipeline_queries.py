"""Batched statements the pipelines need beyond the store's repository functions.

Each takes the caller's ``AsyncSession`` (the caller frames the transaction) and handles a whole
batch in a few statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import String, any_, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._dialect import table_of
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import EarlyReceipt, MTMessage, MTPart, MTStatusHistory
from gatewayd.store.repo_mt import ReceiptIn, ReceiptOutcome, record_receipts
from gatewayd.store.subscribers import Subscriber

#: Parameters per IN (...) list: far below SQLite's and PostgreSQL's bind-parameter limits.
CHUNK = 900


def _chunks(values: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


Block = tuple[bool, bool, str | None]

_BLOCKS = select(Subscriber.msisdn, Subscriber.opted_out, Subscriber.banned, Subscriber.banned_reason).where(
    Subscriber.opted_out | Subscriber.banned
)
_BLOCKS_ANY = _BLOCKS.where(Subscriber.msisdn == any_(bindparam("msisdns", type_=ARRAY(String(20)))))


async def subscriber_blocks(session: AsyncSession, msisdns: Iterable[str]) -> dict[str, Block]:
    """(opted out, banned, ban reason) of the subscribers among these MSISDNs (E.164 digits) that are
    opted out or banned."""
    found: dict[str, Block] = {}
    wanted = sorted(set(msisdns))
    if not wanted:
        return found
    if session.get_bind().dialect.name == "postgresql":  # one prepared statement whatever the count
        rows = await session.execute(_BLOCKS_ANY, {"msisdns": wanted})
        for row in rows:
            found[row.msisdn] = (row.opted_out, row.banned, row.banned_reason)
        return found
    for part in _chunks(wanted):
        rows = await session.execute(_BLOCKS.where(Subscriber.msisdn.in_(part)))
        for row in rows:
            found[row.msisdn] = (row.opted_out, row.banned, row.banned_reason)
    return found


async def refuse_mts(session: AsyncSession, refusals: Sequence[tuple[int, str]], now: datetime) -> None:
    """Claimed MTs that may not be sent (subscriber opted out or banned since queueing): ``refused``,
    with the reason as last error and in the history."""
    if not refusals:
        return
    table = table_of(MTMessage)  # Core table: an executemany UPDATE keyed by bind parameters
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.status == MTStatus.SENDING)
        .values(
            status=MTStatus.REFUSED,
            last_error=bindparam("b_reason"),
            final_at=now,
            updated_at=now,
            claim_owner=None,
            claim_expires_at=None,
        ),
        [{"b_id": mt_id, "b_reason": reason[:255]} for mt_id, reason in refusals],
    )
    await session.execute(
        insert(MTStatusHistory),
        [
            {"mt_id": mt_id, "status": MTStatus.REFUSED, "at": now, "detail": reason[:255]}
            for mt_id, reason in refusals
        ],
    )


async def sweep_early_receipts(session: AsyncSession, now: datetime, *, limit: int = 5000) -> ReceiptOutcome:
    """Apply early receipts whose part has been recorded since.

    A receipt and its part's submit result may be committed by two transactions at the same time;
    under READ COMMITTED neither sees the other, so the receipt stays "early" although its part
    exists. This closes that gap: matched early receipts are applied and removed."""
    early = table_of(EarlyReceipt)
    parts = table_of(MTPart)
    rows = (
        await session.execute(
            select(
                early.c.id,
                early.c.carrier,
                early.c.smsc_message_id,
                early.c.state,
                early.c.error_code,
                early.c.received_at,
            )
            .join(
                parts,
                (parts.c.carrier == early.c.carrier) & (parts.c.smsc_message_id == early.c.smsc_message_id),
            )
            .order_by(early.c.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return ReceiptOutcome([], 0, 0)
    receipts = [
        ReceiptIn(row.carrier, row.smsc_message_id, row.state, row.received_at, row.error_code)
        for row in rows
    ]
    outcome = await record_receipts(session, receipts, now)
    await session.execute(delete(early).where(early.c.id.in_([row.id for row in rows])))
    return outcome
