"""Queueing MTs: the outbox's entry. An MT to an opted-out or banned subscriber is refused here; a
reply marks its conversation answered; each queued MT counts in its subscriber's ``mt_count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import table_of
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.errors import MTRefused, RefusalReason
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.status import insert_history
from gatewayd.store.mt.values import NewMT, QueueOutcome
from gatewayd.store.repo_conversations import note_reply
from gatewayd.store.subscribers import Subscriber

MT_MESSAGES = table_of(MTMessage)
SUBSCRIBERS = table_of(Subscriber)


async def queue_mts(session: AsyncSession, mts: Sequence[NewMT], now: datetime) -> QueueOutcome:
    """Queues MTs in bulk, leaving out those to opted-out or banned subscribers (see ``refused``).
    Replies mark their conversation answered; each queued MT counts in its subscriber's ``mt_count``."""
    if not mts:
        return QueueOutcome([], {})
    known = await _subscribers_by_msisdn(session, {mt.destination for mt in mts if mt.subscriber_id is None})
    ids_wanted = {mt.subscriber_id for mt in mts if mt.subscriber_id is not None}
    flags = await _subscriber_flags(session, ids_wanted | {row[0] for row in known.values()})
    refused: dict[int, RefusalReason] = {}
    rows: list[dict[str, object]] = []
    positions: list[int] = []
    for index, mt in enumerate(mts):
        subscriber_id = mt.subscriber_id
        if subscriber_id is None and mt.destination in known:
            subscriber_id = known[mt.destination][0]
        reason = _refusal(flags.get(subscriber_id)) if subscriber_id is not None else None
        if reason is not None:
            refused[index] = reason
            continue
        positions.append(index)
        rows.append(_mt_row(mt, subscriber_id, now))
    ids: list[int | None] = [None] * len(mts)
    if rows:
        insert = MT_MESSAGES.insert().returning(MT_MESSAGES.c.id, sort_by_parameter_order=True)
        result = await session.execute(insert, rows)
        new_ids = list(result.scalars())
        for index, mt_id in zip(positions, new_ids, strict=True):
            ids[index] = mt_id
        await insert_history(session, [(mt_id, MTStatus.QUEUED, now, None) for mt_id in new_ids])
        await _count_mts(session, [row["subscriber_id"] for row in rows])
        answered = {
            mt.conversation_id
            for mt in (mts[i] for i in positions)
            if mt.kind is MTKind.REPLY and mt.conversation_id is not None
        }
        for conversation_id in sorted(answered):
            await note_reply(session, conversation_id, now)
    return QueueOutcome(ids, refused)


async def queue_mt(session: AsyncSession, mt: NewMT, now: datetime) -> int:
    """Queues one MT and returns its id; raises :class:`MTRefused` for an opted-out or banned
    subscriber."""
    outcome = await queue_mts(session, [mt], now)
    if 0 in outcome.refused:
        raise MTRefused(mt.destination, outcome.refused[0])
    mt_id = outcome.ids[0]
    assert mt_id is not None
    return mt_id


def _mt_row(mt: NewMT, subscriber_id: int | None, now: datetime) -> dict[str, object]:
    return {
        "status": MTStatus.QUEUED,
        "kind": mt.kind,
        "text": mt.text,
        "data_coding": mt.data_coding,
        "segments": 0,
        "attempts": 0,
        "next_attempt_at": mt.not_before or now,
        "priority": mt.priority,
        "request_receipt": mt.request_receipt,
        "carrier": mt.carrier,
        "bind_name": mt.bind_name,
        "source": mt.source,
        "destination": mt.destination,
        "subscriber_id": subscriber_id,
        "conversation_id": mt.conversation_id,
        "operator_id": mt.operator_id,
        "in_reply_to_mo_id": mt.in_reply_to_mo_id,
        "created_at": now,
        "updated_at": now,
        "last_error": None,
        "final_at": None,
        "claim_owner": None,
        "claim_expires_at": None,
    }


def _refusal(flags: tuple[bool, bool] | None) -> RefusalReason | None:
    if flags is None:
        return None
    opted_out, banned = flags
    if banned:
        return RefusalReason.BANNED
    if opted_out:
        return RefusalReason.OPTED_OUT
    return None


async def _subscribers_by_msisdn(session: AsyncSession, msisdns: set[str]) -> dict[str, tuple[int]]:
    if not msisdns:
        return {}
    result = await session.execute(
        select(SUBSCRIBERS.c.msisdn, SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.msisdn.in_(sorted(msisdns)))
    )
    return {row.msisdn: (row.id,) for row in result}


async def _subscriber_flags(session: AsyncSession, ids: set[int]) -> dict[int, tuple[bool, bool]]:
    if not ids:
        return {}
    result = await session.execute(
        select(SUBSCRIBERS.c.id, SUBSCRIBERS.c.opted_out, SUBSCRIBERS.c.banned).where(
            SUBSCRIBERS.c.id.in_(sorted(ids))
        )
    )
    return {row.id: (row.opted_out, row.banned) for row in result}


async def _count_mts(session: AsyncSession, subscriber_ids: Iterable[object]) -> None:
    counts: dict[int, int] = {}
    for subscriber_id in subscriber_ids:
        if isinstance(subscriber_id, int):
            counts[subscriber_id] = counts.get(subscriber_id, 0) + 1
    if counts:
        statement = (
            update(SUBSCRIBERS)
            .where(SUBSCRIBERS.c.id == bindparam("b_id"))
            .values(mt_count=SUBSCRIBERS.c.mt_count + bindparam("b_count"))
        )
        await session.execute(statement, [{"b_id": sid, "b_count": n} for sid, n in sorted(counts.items())])
