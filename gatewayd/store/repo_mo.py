"""MOs: durable batch ingestion with redelivery detection.

The MO pipeline calls :meth:`MOIngest.ingest` once per group-commit batch: a handful of bulk statements
whatever the batch size (subscribers upserted, conversations opened, MOs inserted but redeliveries,
counters touched), then commits.

An SMSC delivers an MO again only when our deliver_sm_resp may not have reached it. So every batch
records its answers as unconfirmed (:func:`open_answers`, one ``mo_unconfirmed`` row per bind
connection) and the pipeline confirms them (:func:`confirm_answers`) once they went out in time on a
connection that stayed up. An MO whose content key matches an MO of the last
:data:`REDELIVERY_WINDOW` whose answer is still unconfirmed is that MO delivered again; any other MO
is new, however alike: the same text twice is two MOs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, case, delete, event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from gatewayd.store._pg import Autocommit, Autocommits
from gatewayd.store._pg_ingest import (
    AT_ONCE_MO_COLUMNS,
    CHECK_REDELIVERY,
    CONVERSATION_ROW,
    HELD_ROW,
    MO_ROW,
    SUBSCRIBER_ROW,
    AnswerInput,
    ingest_alone,
    ingest_at_once,
    insert_mos,
    reserve_answer_ids,
    reserve_answer_ids_alone,
)
from gatewayd.store._tables import among, chunks, table_of
from gatewayd.store.base import UTCDateTime
from gatewayd.store.errors import ClosedMeanwhile
from gatewayd.store.messages import MOMessage, MOUnconfirmed
from gatewayd.store.repo_conversations import ConversationKey, ConversationOpening, note_mos
from gatewayd.store.repo_subscribers import SubscriberRef, SubscriberSeen, SubscriberUpserts, new_client_ids
from gatewayd.store.rollups import connection_shard, count_mos
from gatewayd.store.subscribers import Subscriber

MO_MESSAGES = table_of(MOMessage)
MO_UNCONFIRMED = table_of(MOUnconfirmed)
SUBSCRIBERS = table_of(Subscriber)
#: How long after an MO whose answer is unconfirmed the same content counts as its redelivery: an SMSC
#: sends it again once the bind is back (seconds), or after a daemon restart (minutes). Longer would
#: only risk taking a subscriber's real repeat for one, should their first MO's answer be in doubt.
REDELIVERY_WINDOW = timedelta(minutes=10)
OwnerT = TypeVar("OwnerT")


# Built per MO on the ingest path: a plain slotted dataclass builds several times faster than a frozen one.
@dataclass(slots=True)
class NewMO:
    """One reassembled MO to store. ``msisdn`` is the normalized source address; ``opens_conversation``
    is False for MOs that must not start a chat (reserved keywords such as BAJA). ``dedup_key`` digests
    the content as the SMSC sent it."""

    dedup_key: str
    msisdn: str
    carrier: str
    short_code: str
    text: str
    received_at: datetime
    country: str | None = None
    data_coding: int = 0
    parts: int = 1
    incomplete: bool = False
    smsc_message_id: str | None = None
    bind_name: str | None = None
    service: str | None = None
    keyword: str | None = None
    opens_conversation: bool = True
    #: The MO route's operator pool and call-centre flag: kept on the conversation it opens.
    operator_pool: str | None = None
    callcentre: bool = False
    #: The octets as the SMSC sent them, when ``text`` cannot say everything they do.
    raw: bytes | None = None
    #: The ``mo_unconfirmed`` row of this MO's answer (:func:`open_answers`).
    answer_id: int | None = None
    #: False for an MO the caller knows is no redelivery (assembled from stored parts).
    check_redelivery: bool = True


@dataclass(frozen=True, slots=True)
class IngestedMO:
    """The outcome for one input MO. ``mo_id`` is None for a redelivery (of an MO stored earlier whose
    answer is unconfirmed, or of one earlier in the same batch): answer the SMSC with success, publish
    nothing. ``held_pushes``: whether pushes are held for the subscriber's quiet hours, when the
    ingest was asked (``held_for``) and could tell; None when it does not know."""

    mo: NewMO
    mo_id: int | None
    subscriber: SubscriberRef
    conversation_id: int | None
    held_pushes: bool | None = None

    @property
    def duplicate(self) -> bool:
        return self.mo_id is None


async def open_answers(session: AsyncSession, binds: Sequence[str | None], now: datetime) -> list[int]:
    """One unconfirmed answer per entry of ``binds`` (a group of MOs and parts answered together on that
    bind's connection); returns their ids, in order."""
    if not binds:
        return []
    result = await session.execute(
        insert(MO_UNCONFIRMED).returning(MO_UNCONFIRMED.c.id, sort_by_parameter_order=True),
        [{"bind_name": bind, "created_at": now} for bind in binds],
    )
    return list(result.scalars())


async def confirm_answers(session: AsyncSession, answer_ids: Sequence[int]) -> None:
    """These answers reached the SMSC: their MOs are no longer matched by later ones."""
    for chunk in chunks(answer_ids):
        await session.execute(delete(MO_UNCONFIRMED).where(among(MO_UNCONFIRMED.c.id, chunk)))


async def forget_unconfirmed(session: AsyncSession, before: datetime) -> int:
    """Drops unconfirmed answers older than ``before`` (past the redelivery window); returns how many."""
    result = await session.execute(delete(MO_UNCONFIRMED).where(MO_UNCONFIRMED.c.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


class MOIngest(ABC):
    """Stores MO batches: subscribers upserted, conversations opened, MOs inserted but redeliveries,
    counters and waiting marks touched."""

    def __init__(self, subscribers: SubscriberUpserts, conversations: ConversationOpening) -> None:
        self._subscribers = subscribers
        self._conversations = conversations

    async def open_answers(
        self, session: AsyncSession, binds: Sequence[str | None], now: datetime
    ) -> list[int]:
        """:func:`open_answers`: the answers of a batch, unconfirmed, written in its transaction."""
        return await open_answers(session, binds, now)

    async def ingest(
        self, session: AsyncSession, mos: Sequence[NewMO], now: datetime, held_for: Collection[str] = ()
    ) -> list[IngestedMO]:
        """Stores a batch of MOs (the caller commits). Returns one :class:`IngestedMO` per input, in
        order. ``held_for``: MSISDNs whose held pushes the caller would release (writers in their quiet
        hours); an ingest that can tell at no extra round trip says whether they have any."""
        if not mos:
            return []
        results = await self._store(session, mos, now)
        await count_mos(session, results)
        return results

    async def _store(
        self,
        session: AsyncSession,
        mos: Sequence[NewMO],
        now: datetime,
        known: Mapping[str, SubscriberRef] | None = None,
    ) -> list[IngestedMO]:
        """:meth:`ingest` but the rollups, in a few statements; ``known``: subscribers this transaction
        resolved already (and created, with their MOs counted), by MSISDN."""
        since = now - REDELIVERY_WINDOW
        first_of_key: dict[str, NewMO] = {}
        for mo in mos:
            first_of_key.setdefault(mo.dedup_key, mo)
        # A subscriber or conversation this batch creates starts with its figures of the batch already
        # set, so the MO statement does not rewrite rows it just inserted.
        subscribers = dict(known or {})
        unknown = [
            item for item in _subscribers_seen(mos, first_of_key.values()) if item.msisdn not in subscribers
        ]
        if unknown:
            subscribers.update(await self._subscribers.upsert(session, unknown, now))
        keys = _conversation_keys([(subscribers[mo.msisdn].id, mo) for mo in mos if mo.opens_conversation])
        conversations = await self._conversations.get_or_open(session, keys, now)
        conversation_ids = [
            conversations.get((subscribers[mo.msisdn].id, mo.short_code)) if mo.opens_conversation else None
            for mo in mos
        ]
        rows = {
            mo.dedup_key: _row(mo, subscribers[mo.msisdn].id, conversation_id)
            for mo, conversation_id in zip(mos, conversation_ids, strict=True)
            if first_of_key[mo.dedup_key] is mo
        }
        inserted, closed = await self._insert(session, rows, subscribers, since)
        results = [
            IngestedMO(mo, mo_id, subscribers[mo.msisdn], conversation_id)
            for mo, mo_id, conversation_id in zip(mos, _mo_ids(mos, inserted), conversation_ids, strict=True)
        ]
        if closed:
            raise ClosedMeanwhile(closed)
        await self._count(session, [result for result in results if result.mo_id is not None])
        return results

    @abstractmethod
    async def _insert(
        self,
        session: AsyncSession,
        rows: Mapping[str, dict[str, object]],
        subscribers: Mapping[str, SubscriberRef],
        since: datetime,
    ) -> tuple[dict[str, int], set[int]]:
        """Inserts the rows (by unique dedup key) but the redeliveries of MOs received since ``since``;
        returns {dedup_key: id} of those inserted, and the conversations among theirs that an operator
        closed since they were found open (the caller raises :class:`ClosedMeanwhile`)."""

    @abstractmethod
    async def _count(self, session: AsyncSession, new: Sequence[IngestedMO]) -> None:
        """The new MOs counted on their subscribers, their conversations marked waiting."""


class SQLiteMOIngest(MOIngest):
    """Redeliveries looked up first, the others inserted; then the counters and waiting marks, by
    executemany UPDATEs."""

    async def _insert(
        self,
        session: AsyncSession,
        rows: Mapping[str, dict[str, object]],
        subscribers: Mapping[str, SubscriberRef],
        since: datetime,
    ) -> tuple[dict[str, int], set[int]]:
        # no conversation closes meanwhile: SQLite has one writer (transactions begin IMMEDIATE)
        return await _insert_new(session, list(rows.values()), since), set()

    async def _count(self, session: AsyncSession, new: Sequence[IngestedMO]) -> None:
        await _touch_subscribers(session, new)
        await note_mos(
            session,
            [
                (result.conversation_id, result.mo.received_at)
                for result in new
                if result.conversation_id is not None
            ],
        )


class PostgreSQLMOIngest(MOIngest):
    """One statement stores the batch (:func:`ingest_at_once`): subscribers, conversations, MOs but the
    redeliveries, counters and waiting marks. When a concurrent batch created one of its subscribers
    or conversations meanwhile, the statement stops short and the array statements of
    :class:`MOIngest` store the whole batch, looking those rows up again (and retrying a client ID
    that collided), with the subscribers the statement created counted as it counted them."""

    def __init__(self, subscribers: SubscriberUpserts, conversations: ConversationOpening) -> None:
        super().__init__(subscribers, conversations)
        self._answer_ids: deque[int] = deque()

    async def open_answers(
        self, session: AsyncSession, binds: Sequence[str | None], now: datetime
    ) -> list[int]:
        """The answers' ids come from a block reserved ahead (a round trip per
        :data:`ANSWER_ID_BLOCK` answers); their rows are written by the batch's :meth:`ingest`, in its
        statement, or else when the transaction commits."""
        if not binds:
            return []
        ids = await self.answer_ids(len(binds), lambda count: reserve_answer_ids(session, count))
        _unwritten_answers(session).extend(
            (answer_id, bind, now) for answer_id, bind in zip(ids, binds, strict=True)
        )
        return ids

    async def answer_ids(self, count: int, reserve: Callable[[int], Awaitable[list[int]]]) -> list[int]:
        """``count`` answer ids from the block reserved ahead, ``reserve`` taking the next block."""
        if len(self._answer_ids) < count:
            self._answer_ids.extend(await reserve(max(ANSWER_ID_BLOCK, count)))
        return [self._answer_ids.popleft() for _ in range(count)]

    async def ingest(
        self, session: AsyncSession, mos: Sequence[NewMO], now: datetime, held_for: Collection[str] = ()
    ) -> list[IngestedMO]:
        if not mos:
            return []
        results, subscribers = await self._at_once(session, mos, now, held_for)
        if results is None:  # stopped short: the subscribers it resolved are known now
            results = await self._store(session, mos, now, subscribers)
        await count_mos(session, results)
        return results

    async def _at_once(
        self, session: AsyncSession, mos: Sequence[NewMO], now: datetime, held_for: Collection[str]
    ) -> tuple[list[IngestedMO] | None, dict[str, SubscriberRef]]:
        """Each MO's outcome from :func:`ingest_at_once` (None when it stopped short: a subscriber or
        conversation not resolved), and the subscribers it resolved."""
        batch = _AtOnceBatch(mos, held_for)
        rows = await ingest_at_once(
            session,
            batch.mo_rows,
            batch.subscriber_rows,
            batch.openings,
            session.sync_session.info.pop(_UNWRITTEN_ANSWERS, ()),
            now - REDELIVERY_WINDOW,
            now,
            batch.asked,
        )
        outcome = batch.outcome(rows)
        await self._subscribers.note_carriers(session, batch.seen, outcome.subscribers)
        if not outcome.every_resolved:
            return None, outcome.subscribers
        results = outcome.results()
        if outcome.closed:
            raise ClosedMeanwhile(outcome.closed)
        return results, outcome.subscribers

    async def _insert(
        self,
        session: AsyncSession,
        rows: Mapping[str, dict[str, object]],
        subscribers: Mapping[str, SubscriberRef],
        since: datetime,
    ) -> tuple[dict[str, int], set[int]]:
        counted = {ref.id: ref.counted_mos for ref in subscribers.values() if ref.counted_mos}
        # dedup-key order: two batches racing on the same redelivered MOs wait, never deadlock
        return await insert_mos(session, [rows[key] for key in sorted(rows)], since, counted)

    async def _count(self, session: AsyncSession, new: Sequence[IngestedMO]) -> None:
        """Nothing left: the insert statement counted them."""


class MOAlone:
    """A batch of whole MOs stored by one statement in a transaction of its own (PostgreSQL): one round
    trip where a transaction of the session takes four (BEGIN, the MO statement, the rollups, COMMIT),
    and none of the session's work around them. The statement writes the batch's traffic rollups
    itself; it commits nothing and :meth:`ingest` raises ``NeedsTransaction`` where the batch needs more
    than it (see ``_pg_ingest._INGEST_ALONE``): the caller then stores the batch in a transaction. Its
    caller keeps to batches that need nothing else: no parts, no reserved keyword, no premium notice,
    no webhook, every MO with a country (the writer's quiet hours then follow from it)."""

    def __init__(self, autocommits: Autocommits, ingest: PostgreSQLMOIngest) -> None:
        self._autocommits = autocommits
        self._ingest = ingest

    def connection(self) -> AbstractAsyncContextManager[Autocommit]:
        """A connection for :meth:`answer_ids` and :meth:`ingest`."""
        return self._autocommits.connection()

    async def answer_ids(self, connection: Autocommit, count: int) -> list[int]:
        """Ids for the batch's answers (one per bind connection), given to :meth:`ingest` with their
        binds: from the ingest's reserve, whose ids are never handed out twice."""
        return await self._ingest.answer_ids(count, lambda size: reserve_answer_ids_alone(connection, size))

    async def ingest(
        self,
        connection: Autocommit,
        mos: Sequence[NewMO],
        answers: Sequence[AnswerInput],
        now: datetime,
        *,
        held_for: Collection[str] = (),
        banned_need_transaction: bool,
    ) -> list[IngestedMO]:
        """Stores the batch and its ``answers`` (id, bind, created_at) and counts its MOs, committed;
        raises ``NeedsTransaction``, having stored nothing, when it needs a transaction. ``held_for``:
        writers in their quiet hours (a writer with held pushes needs the transaction that releases
        them); ``banned_need_transaction``: a banned writer's MO is answered, in the transaction that
        stores it."""
        if not mos:
            return []
        batch = _AtOnceBatch(mos, held_for)
        rows = await ingest_alone(
            connection,
            batch.mo_rows,
            batch.subscriber_rows,
            batch.first_keys,
            batch.openings,
            answers,
            now - REDELIVERY_WINDOW,
            now,
            batch.asked,
            connection_shard(connection.info),
            banned_need_transaction,
        )
        return batch.outcome(rows).results()


class _AtOnceBatch:
    """A batch as the one-statement ingest takes it, and its answer read back."""

    def __init__(self, mos: Sequence[NewMO], held_for: Collection[str]) -> None:
        self.mos = mos
        self.held_for = held_for
        first_of_key: dict[str, NewMO] = {}
        for mo in mos:
            first_of_key.setdefault(mo.dedup_key, mo)
        self.seen = {item.msisdn: item for item in _subscribers_seen(mos, first_of_key.values())}
        self.first_keys: dict[str, str] = {}
        for mo in mos:
            self.first_keys.setdefault(mo.msisdn, mo.dedup_key)
        client_ids = new_client_ids(len(self.seen))
        self.spans = _conversation_spans([(mo.msisdn, mo) for mo in mos if mo.opens_conversation])
        self.asked = sorted(msisdn for msisdn in self.seen if msisdn in held_for)
        # dedup-key order: two batches racing on the same redelivered MOs wait, never deadlock
        self.mo_rows = [_at_once_row(first_of_key[key]) for key in sorted(first_of_key)]
        # tuples in the order of AT_ONCE_SUBSCRIBER_COLUMNS and AT_ONCE_OPENING_COLUMNS
        self.subscriber_rows = [
            (item.msisdn, client_id, item.carrier, item.country, item.mos, item.last_mo_at)
            for item, client_id in zip(self.seen.values(), client_ids, strict=True)
        ]
        self.openings = [
            (msisdn, short_code, mo.service, first, last, mo.operator_pool, mo.callcentre)
            for (msisdn, short_code), (mo, first, last) in self.spans.items()
        ]

    def outcome(self, rows: Sequence[Any]) -> _AtOnceOutcome:
        outcome = _AtOnceOutcome(self)
        # unpacked: a row's attributes are looked up by name, ten times a row, thirty rows a batch
        for kind, row_id, owner, name, client_id, carrier, country, opted_out, banned, created in map(
            tuple, rows
        ):
            if kind == SUBSCRIBER_ROW:
                outcome.subscribers[name] = SubscriberRef(
                    row_id,
                    client_id,
                    name,
                    carrier,
                    country,
                    opted_out,
                    banned,
                    self.seen[name].mos if created else 0,
                    created,
                )
            elif kind == CONVERSATION_ROW:
                outcome.conversations[(owner, name)] = row_id
            elif kind == MO_ROW:
                outcome.inserted[name] = row_id
            elif kind == HELD_ROW:
                outcome.held.add(name)
            else:
                outcome.closed.add(row_id)
        return outcome


class _AtOnceOutcome:
    """What the one-statement ingest resolved, stored and found."""

    def __init__(self, batch: _AtOnceBatch) -> None:
        self.batch = batch
        self.subscribers: dict[str, SubscriberRef] = {}
        self.conversations: dict[tuple[int, str], int] = {}
        self.inserted: dict[str, int] = {}
        self.closed: set[int] = set()
        self.held: set[str] = set()

    @property
    def every_resolved(self) -> bool:
        batch = self.batch
        return len(self.subscribers) == len(batch.seen) and len(self.conversations) == len(batch.spans)

    def results(self) -> list[IngestedMO]:
        """Each MO's outcome, in order (every subscriber and conversation resolved)."""
        results: list[IngestedMO] = []
        mos, held_for = self.batch.mos, self.batch.held_for
        for mo, mo_id in zip(mos, _mo_ids(mos, self.inserted), strict=True):
            subscriber = self.subscribers[mo.msisdn]
            conversation_id = (
                self.conversations[(subscriber.id, mo.short_code)] if mo.opens_conversation else None
            )
            held_pushes = mo.msisdn in self.held if mo.msisdn in held_for else None
            results.append(IngestedMO(mo, mo_id, subscriber, conversation_id, held_pushes))
        return results


def _mo_ids(mos: Sequence[NewMO], inserted: Mapping[str, int]) -> list[int | None]:
    """Each MO's id from ``inserted`` ({dedup_key: id}); None for a redelivery, and for a dedup key
    repeated inside the batch but at its first occurrence."""
    ids: list[int | None] = []
    claimed: set[str] = set()
    for mo in mos:
        ids.append(inserted.get(mo.dedup_key) if mo.dedup_key not in claimed else None)
        claimed.add(mo.dedup_key)
    return ids


#: Answer ids :meth:`PostgreSQLMOIngest.open_answers` reserves at a time (one per batch and bind).
ANSWER_ID_BLOCK = 64
_UNWRITTEN_ANSWERS = "echat.mo.unwritten_answers"


def _unwritten_answers(session: AsyncSession) -> list[AnswerInput]:
    """The answers opened in the session's transaction whose rows are not written yet."""
    answers: list[AnswerInput] = session.sync_session.info.setdefault(_UNWRITTEN_ANSWERS, [])
    return answers


@event.listens_for(Session, "before_commit")
def _write_answers(session: Session) -> None:
    """A batch's answers no MO statement wrote (a batch of parts only): written before the commit."""
    answers = session.info.pop(_UNWRITTEN_ANSWERS, None)
    if answers:
        session.execute(
            insert(MO_UNCONFIRMED),
            [{"id": answer_id, "bind_name": bind, "created_at": at} for answer_id, bind, at in answers],
        )


@event.listens_for(Session, "after_transaction_end")
def _forget_answers(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (or committed: written)
        session.info.pop(_UNWRITTEN_ANSWERS, None)


def _subscribers_seen(mos: Sequence[NewMO], first_of_key: Iterable[NewMO]) -> list[SubscriberSeen]:
    """One entry per MSISDN (its last MO's carrier and country) with its batch's distinct MOs."""
    latest: dict[str, NewMO] = {mo.msisdn: mo for mo in mos}
    counts: Counter[str] = Counter()
    last_at: dict[str, datetime] = {}
    for mo in first_of_key:
        counts[mo.msisdn] += 1
        last_at[mo.msisdn] = max(last_at.get(mo.msisdn, mo.received_at), mo.received_at)
    return [
        SubscriberSeen(msisdn, mo.carrier, mo.country, counts[msisdn], last_at[msisdn])
        for msisdn, mo in latest.items()
    ]


def _conversation_keys(opening: Sequence[tuple[int, NewMO]]) -> list[ConversationKey]:
    """One key per (subscriber, short code): see :func:`_conversation_spans`."""
    return [
        ConversationKey(pair[0], pair[1], mo.service, first, last, mo.operator_pool, mo.callcentre)
        for pair, (mo, first, last) in _conversation_spans(opening).items()
    ]


def _conversation_spans(
    opening: Sequence[tuple[OwnerT, NewMO]],
) -> dict[tuple[OwnerT, str], tuple[NewMO, datetime, datetime]]:
    """Per (subscriber, short code): the batch's first MO for it, whose service, pool and call-centre
    flag open the conversation when it has none yet, and the span of its MOs (it waits since the first)."""
    spans: dict[tuple[OwnerT, str], tuple[NewMO, datetime, datetime]] = {}
    for owner, mo in opening:
        pair = (owner, mo.short_code)
        opener, first, last = spans.get(pair, (mo, mo.received_at, mo.received_at))
        spans[pair] = (opener, min(first, mo.received_at), max(last, mo.received_at))
    return spans


# A NewMO's fields by the names of the statement's columns, in their order: one C call per row.
_at_once_row: Callable[[NewMO], tuple[object, ...]] = attrgetter(*AT_ONCE_MO_COLUMNS)


def _row(mo: NewMO, subscriber_id: int, conversation_id: int | None) -> dict[str, object]:
    return {
        "dedup_key": mo.dedup_key,
        "subscriber_id": subscriber_id,
        "conversation_id": conversation_id,
        "carrier": mo.carrier,
        "bind_name": mo.bind_name,
        "short_code": mo.short_code,
        "country": mo.country,
        "text": mo.text,
        "data_coding": mo.data_coding,
        "parts": mo.parts,
        "incomplete": mo.incomplete,
        "smsc_message_id": mo.smsc_message_id,
        "received_at": mo.received_at,
        "service": mo.service,
        "keyword": mo.keyword,
        "raw": mo.raw,
        "answer_id": mo.answer_id,
        CHECK_REDELIVERY: mo.check_redelivery,
    }


async def _insert_new(
    session: AsyncSession, rows: list[dict[str, object]], since: datetime
) -> dict[str, int]:
    """Inserts the rows (unique dedup keys) but the redeliveries; returns {dedup_key: id} of those
    inserted."""
    checked = [str(row["dedup_key"]) for row in rows if row[CHECK_REDELIVERY]]
    if checked:
        delivered_before = await unconfirmed_keys(session, MO_MESSAGES, checked, since)
        again = [row for row in rows if row[CHECK_REDELIVERY] and row["dedup_key"] in delivered_before]
        await take_answers(
            session,
            MO_MESSAGES,
            [(delivered_before[str(row["dedup_key"])], row["answer_id"]) for row in again],
        )
        rows = [row for row in rows if not (row[CHECK_REDELIVERY] and row["dedup_key"] in delivered_before)]
        if not rows:
            return {}
    rows = [{name: value for name, value in row.items() if name != CHECK_REDELIVERY} for row in rows]
    # rows are told apart by their (unique) key: no need for ordered RETURNING, which would make
    # SQLite insert them one statement per row
    statement = insert(MO_MESSAGES).returning(MO_MESSAGES.c.id, MO_MESSAGES.c.dedup_key)
    result = await session.execute(statement, rows)
    return {row.dedup_key: row.id for row in result}


async def unconfirmed_keys(
    session: AsyncSession, table: Table, keys: Sequence[str], since: datetime
) -> dict[str, int]:
    """{key: row id} for the keys among ``keys`` of rows of ``table`` (MOs or MO parts) received since
    ``since`` whose answer is unconfirmed: what comes with such a key is that row's redelivery."""
    found: dict[str, int] = {}
    for chunk in chunks(keys):
        rows = await session.execute(
            select(table.c.dedup_key, table.c.id)
            .join(MO_UNCONFIRMED, MO_UNCONFIRMED.c.id == table.c.answer_id)
            .where(among(table.c.dedup_key, chunk), table.c.received_at >= since)
        )
        found.update({row.dedup_key: row.id for row in rows})
    return found


async def take_answers(session: AsyncSession, table: Table, moved: Sequence[tuple[int, object]]) -> None:
    """(row id, answer id): each row delivered again is answered by the redelivery's answer now, and
    confirmed with it (a redelivery without an answer of its own leaves the row's as it is)."""
    moved = [(row_id, answer_id) for row_id, answer_id in moved if answer_id is not None]
    if moved:
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(answer_id=bindparam("b_answer")),
            [{"b_id": row_id, "b_answer": answer_id} for row_id, answer_id in moved],
        )


async def _touch_subscribers(session: AsyncSession, new: Sequence[IngestedMO]) -> None:
    counts: Counter[int] = Counter()
    latest: dict[int, datetime] = {}
    for result in new:
        subscriber_id = result.subscriber.id
        counts[subscriber_id] += 1
        latest[subscriber_id] = max(latest.get(subscriber_id, result.mo.received_at), result.mo.received_at)
    if not counts:
        return
    seen_at = bindparam("b_seen", type_=UTCDateTime())
    statement = (
        update(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.id == bindparam("b_id"))
        .values(
            mo_count=SUBSCRIBERS.c.mo_count + bindparam("b_count"),
            last_seen=case((SUBSCRIBERS.c.last_seen < seen_at, seen_at), else_=SUBSCRIBERS.c.last_seen),
        )
    )
    await session.execute(
        statement, [{"b_id": sid, "b_count": counts[sid], "b_seen": latest[sid]} for sid in sorted(counts)]
    )
