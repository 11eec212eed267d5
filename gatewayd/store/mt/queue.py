"""Storing queued MTs: the outbox's rows. A reply marks its conversation answered; each queued MT
counts in its subscriber's ``mt_count``.

Only the outbox (``gatewayd.outbox``) calls this: it has applied the recipient rule
(``recipients.refusal``), picked carrier and source and rendered the text before; the store stores.
The rows themselves (each MT with its ``queued`` history line) are written by an :class:`MTInserts`,
chosen with the store (``Store.mt_inserts``): SQLAlchemy Core statements on any database, or on
PostgreSQL one array statement whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._pg import aware, pg_rows
from gatewayd.store._tables import among, table_of
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.mt.held import RELEASED, held, held_sql
from gatewayd.store.mt.status import insert_history
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_conversations import lock_conversations, note_reply
from gatewayd.store.rollups import count_mts, count_replies
from gatewayd.store.subscribers import Subscriber

MT_MESSAGES = table_of(MTMessage)
SUBSCRIBERS = table_of(Subscriber)


class MTInserts:
    """Writes queued MTs with their history lines, in SQLAlchemy Core statements that read the same on
    SQLite and PostgreSQL (a subscriber look-up, the MTs' insert, the history's)."""

    async def insert(
        self, session: AsyncSession, mts: Sequence[NewMT], now: datetime
    ) -> list[tuple[int, int | None]]:
        """Stores ``mts`` (not empty) as ``queued`` with their history lines at ``now``; an MT without a
        ``subscriber_id`` gets the one of its destination when it is a known subscriber. Per MT, in
        order: its id (ascending in that order) and its subscriber's id."""
        known = await _subscribers_by_msisdn(
            session, {mt.destination for mt in mts if mt.subscriber_id is None}
        )
        subscriber_ids = [mt.subscriber_id or known.get(mt.destination) for mt in mts]
        rows = [
            _mt_row(mt, subscriber_id, now) for mt, subscriber_id in zip(mts, subscriber_ids, strict=True)
        ]
        insert = MT_MESSAGES.insert().returning(MT_MESSAGES.c.id, sort_by_parameter_order=True)
        ids = list((await session.execute(insert, rows)).scalars())
        await insert_history(
            session, [(mt_id, MTStatus.QUEUED, now, mt.note) for mt_id, mt in zip(ids, mts, strict=True)]
        )
        return list(zip(ids, subscriber_ids, strict=True))

    async def release_held(
        self, session: AsyncSession, subscriber_ids: Collection[int], now: datetime
    ) -> list[int]:
        """The pushes held for these subscribers' quiet hours (``queued``, never tried, due later), and
        the premium notices held with them (``SYSTEM``), made due at ``now``, each with a history line:
        the client wrote, so they are awake. Their ids, ascending."""
        if not subscriber_ids:
            return []
        table = MT_MESSAGES
        result = await session.execute(
            update(table)
            .where(
                among(table.c.subscriber_id, sorted(set(subscriber_ids))),
                held(table, now),
            )
            .values(next_attempt_at=now, updated_at=now)
            .returning(table.c.id)
        )
        ids = sorted(result.scalars())
        await insert_history(session, [(mt_id, MTStatus.QUEUED, now, RELEASED) for mt_id in ids])
        return ids


# The batch as arrays: each MT takes the next id of the table's sequence in the batch's order (the
# claim's order within a priority and time), finds its subscriber by number when not given (a LIMIT 1
# probe per row), and is inserted with its history line; one round trip, one prepared statement.
_INSERT_MTS = """
WITH input AS (
    SELECT * FROM unnest($1::varchar[], $2::text[], $3::smallint[], $4::timestamptz[], $5::smallint[],
                         $6::boolean[], $7::varchar[], $8::varchar[], $9::varchar[], $10::varchar[],
                         $11::bigint[], $12::bigint[], $13::integer[], $14::bigint[], $16::integer[],
                         $17::varchar[]) WITH ORDINALITY
        AS i(kind, text, data_coding, next_attempt_at, priority, request_receipt, carrier, bind_name, source,
             destination, subscriber_id, conversation_id, operator_id, in_reply_to_mo_id, charge, note, n)
), numbered AS MATERIALIZED (
    SELECT nextval('mt_messages_id_seq') AS id, i.*, COALESCE(i.subscriber_id, s.id) AS known_subscriber_id
    FROM input AS i
    LEFT JOIN LATERAL (SELECT s.id FROM subscribers AS s
                       WHERE i.subscriber_id IS NULL AND s.msisdn = i.destination LIMIT 1) AS s ON true
    ORDER BY i.n
), inserted AS (
    INSERT INTO mt_messages (id, status, kind, text, data_coding, segments, attempts, next_attempt_at,
                             priority, request_receipt, carrier, bind_name, source, destination,
                             subscriber_id, conversation_id, operator_id, in_reply_to_mo_id, charge,
                             created_at, updated_at)
    SELECT id, 'queued', kind, text, data_coding, 0, 0, next_attempt_at, priority, request_receipt, carrier,
           bind_name, source, destination, known_subscriber_id, conversation_id, operator_id,
           in_reply_to_mo_id, charge, $15::timestamptz, $15::timestamptz
    FROM numbered ORDER BY id
), history AS (
    INSERT INTO mt_status_history (mt_id, status, at, detail)
    SELECT id, 'queued', $15::timestamptz, note FROM numbered ORDER BY id
)
SELECT id, known_subscriber_id FROM numbered ORDER BY n
"""


# Sent for an MO batch's writers in their quiet hours, unless the MO statement found nothing held for
# them (almost always: a push is held only when queued at night); the history lines are written by
# the same statement.
_RELEASE_HELD = f"""
WITH released AS (
    UPDATE mt_messages AS m SET next_attempt_at = $2::timestamptz, updated_at = $2::timestamptz
    WHERE m.subscriber_id = ANY($1::bigint[]) AND {held_sql("m", "$2::timestamptz")}
    RETURNING m.id
), history AS (
    INSERT INTO mt_status_history (mt_id, status, at, detail)
    SELECT id, '{MTStatus.QUEUED.value}', $2::timestamptz, $3::varchar FROM released ORDER BY id
)
SELECT id FROM released ORDER BY id
"""


class PostgreSQLMTInserts(MTInserts):
    """The same rows in one array statement (``_INSERT_MTS``): the batch's size changes neither the
    statement nor the number of round trips. Held pushes are released by one array statement too
    (``_RELEASE_HELD``), history lines included."""

    async def insert(
        self, session: AsyncSession, mts: Sequence[NewMT], now: datetime
    ) -> list[tuple[int, int | None]]:
        moment = aware(now)
        rows = await pg_rows(
            session,
            _INSERT_MTS,
            [mt.kind.value for mt in mts],
            [mt.text for mt in mts],
            [mt.data_coding for mt in mts],
            [aware(mt.not_before) if mt.not_before is not None else moment for mt in mts],
            [mt.priority for mt in mts],
            [mt.request_receipt for mt in mts],
            [mt.carrier for mt in mts],
            [mt.bind_name for mt in mts],
            [mt.source for mt in mts],
            [mt.destination for mt in mts],
            [mt.subscriber_id for mt in mts],
            [mt.conversation_id for mt in mts],
            [mt.operator_id for mt in mts],
            [mt.in_reply_to_mo_id for mt in mts],
            moment,
            [mt.charge for mt in mts],
            [mt.note for mt in mts],
        )
        return [(row.id, row.known_subscriber_id) for row in rows]

    async def release_held(
        self, session: AsyncSession, subscriber_ids: Collection[int], now: datetime
    ) -> list[int]:
        if not subscriber_ids:
            return []
        rows = await pg_rows(session, _RELEASE_HELD, sorted(set(subscriber_ids)), aware(now), RELEASED)
        return [row.id for row in rows]


#: The inserts of a caller without a store (tests, the panel's previews): Core, any database.
ANY_DATABASE = MTInserts()


async def queue_mts(
    session: AsyncSession, mts: Sequence[NewMT], now: datetime, inserts: MTInserts = ANY_DATABASE
) -> list[int]:
    """Stores MTs in bulk (``queued``, with their history line) through ``inserts``; their ids, in
    order. An MT without a ``subscriber_id`` gets the one of its destination when it is a known
    subscriber. Replies mark their conversation answered; each queued MT counts in its subscriber's
    ``mt_count`` and in the reports' rollups."""
    if not mts:
        return []
    stored = await inserts.insert(session, mts, now)
    ids = [mt_id for mt_id, _ in stored]
    subscriber_ids = [subscriber_id for _, subscriber_id in stored]
    await count_mts(session, mts, subscriber_ids, now)
    await _count_mts(session, subscriber_ids)
    answered = {
        mt.conversation_id for mt in mts if mt.kind is MTKind.REPLY and mt.conversation_id is not None
    }
    # locked after the subscribers, as before: the replies counted from what the lock holds
    await lock_conversations(session, answered)
    await count_replies(session, mts, ids, now)
    for conversation_id in sorted(answered):
        await note_reply(session, conversation_id, now)
    return ids


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
        "charge": mt.charge,
        "created_at": now,
        "updated_at": now,
        "last_error": None,
        "final_at": None,
        "claim_owner": None,
        "claim_expires_at": None,
    }


async def _subscribers_by_msisdn(session: AsyncSession, msisdns: set[str]) -> dict[str, int]:
    if not msisdns:
        return {}
    result = await session.execute(
        select(SUBSCRIBERS.c.msisdn, SUBSCRIBERS.c.id).where(among(SUBSCRIBERS.c.msisdn, sorted(msisdns)))
    )
    return {row.msisdn: row.id for row in result}


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
