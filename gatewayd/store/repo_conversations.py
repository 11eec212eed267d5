"""Conversations: race-safe get-or-open, the waiting/open transitions (who holds one: see
``repo_assignment``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._pg_ingest import open_conversations
from gatewayd.store._tables import among, table_of
from gatewayd.store.base import UTCDateTime
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus

CONVERSATIONS = table_of(Conversation)


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """A conversation is identified by its subscriber and short code; ``service``, ``operator_pool`` and
    ``callcentre`` (the MO route's decision) are set on opening, and so are ``first_mo_at``/``last_mo_at``
    (its waiting marks) when MOs open it."""

    subscriber_id: int
    short_code: str
    service: str | None = None
    first_mo_at: datetime | None = None
    last_mo_at: datetime | None = None
    operator_pool: str | None = None
    callcentre: bool = False


class ConversationOpening(ABC):
    """The active conversation of each (subscriber, short code) an MO batch names, opened if need be."""

    async def get_or_open(
        self, session: AsyncSession, keys: Sequence[ConversationKey], now: datetime
    ) -> dict[tuple[int, str], int]:
        """The id of the not-closed conversation of each (subscriber_id, short_code), opening those
        that have none. Race-safe: a partial unique index allows one active conversation per pair, and
        the insert is ``ON CONFLICT DO NOTHING`` followed by a select."""
        wanted = {(key.subscriber_id, key.short_code): key for key in keys}
        if not wanted:
            return {}
        return await self._open(session, wanted, now)

    @abstractmethod
    async def _open(
        self, session: AsyncSession, wanted: Mapping[tuple[int, str], ConversationKey], now: datetime
    ) -> dict[tuple[int, str], int]:
        """:meth:`get_or_open` of one key per pair."""


class SQLiteConversationOpening(ConversationOpening):
    """A SELECT, an executemany INSERT ... ON CONFLICT DO NOTHING of those missing, a SELECT of them."""

    async def _open(
        self, session: AsyncSession, wanted: Mapping[tuple[int, str], ConversationKey], now: datetime
    ) -> dict[tuple[int, str], int]:
        pairs = sorted(wanted)
        found = await _active(session, pairs)
        missing = [pair for pair in pairs if pair not in found]
        if missing:
            rows = [
                {
                    "subscriber_id": pair[0],
                    "short_code": pair[1],
                    "service": wanted[pair].service,
                    "status": ConversationStatus.WAITING,
                    "opened_at": now,
                    "waiting_since": wanted[pair].first_mo_at,
                    "last_mo_at": wanted[pair].last_mo_at,
                    "operator_pool": wanted[pair].operator_pool,
                    "callcentre": wanted[pair].callcentre,
                }
                for pair in missing
            ]
            await session.execute(sqlite.insert(CONVERSATIONS).on_conflict_do_nothing(), rows)
            found.update(await _active(session, missing))
        return found


class PostgreSQLConversationOpening(ConversationOpening):
    """One array statement opens the missing and reads back every pair."""

    async def _open(
        self, session: AsyncSession, wanted: Mapping[tuple[int, str], ConversationKey], now: datetime
    ) -> dict[tuple[int, str], int]:
        return await open_conversations(
            session,
            [
                (
                    key.subscriber_id,
                    key.short_code,
                    key.service,
                    key.first_mo_at,
                    key.last_mo_at,
                    key.operator_pool,
                    key.callcentre,
                )
                for key in wanted.values()
            ],
            now,
        )


async def _active(session: AsyncSession, pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], int]:
    # Plain IN lists (then an exact filter here) plan far better on PostgreSQL than a row-value IN.
    table = CONVERSATIONS
    wanted = set(pairs)
    result = await session.execute(
        select(table.c.subscriber_id, table.c.short_code, table.c.id).where(
            among(table.c.subscriber_id, sorted({pair[0] for pair in wanted})),
            among(table.c.short_code, sorted({pair[1] for pair in wanted})),
            table.c.status != ConversationStatus.CLOSED,
        )
    )
    return {
        (row.subscriber_id, row.short_code): row.id
        for row in result
        if (row.subscriber_id, row.short_code) in wanted
    }


async def note_mos(session: AsyncSession, received: Sequence[tuple[int, datetime]]) -> None:
    """The subscriber wrote in each (conversation_id, received_at): the conversation waits for an answer
    (``waiting_since`` keeps the oldest unanswered MO, ``last_mo_at`` the newest)."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    for conversation_id, at in received:
        first, last = spans.get(conversation_id, (at, at))
        spans[conversation_id] = (min(first, at), max(last, at))
    if not spans:
        return
    table = CONVERSATIONS
    first_at = bindparam("b_first", type_=UTCDateTime())
    last_at = bindparam("b_last", type_=UTCDateTime())
    newer = or_(table.c.last_mo_at.is_(None), table.c.last_mo_at < last_at)
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            status=ConversationStatus.WAITING,
            waiting_since=func.coalesce(table.c.waiting_since, first_at),
            last_mo_at=case((newer, last_at), else_=table.c.last_mo_at),
        )
    )
    await session.execute(
        statement,
        [{"b_id": cid, "b_first": first, "b_last": last} for cid, (first, last) in sorted(spans.items())],
    )


async def lock_conversations(session: AsyncSession, conversation_ids: Iterable[int]) -> None:
    """Holds these conversations' rows until the transaction ends (PostgreSQL; in id order)."""
    ids = sorted(set(conversation_ids))
    if ids:
        table = CONVERSATIONS
        await session.execute(
            select(table.c.id).where(among(table.c.id, ids)).order_by(table.c.id).with_for_update()
        )


async def note_reply(session: AsyncSession, conversation_id: int, now: datetime) -> None:
    """An operator answered: the conversation is open and no longer waiting."""
    table = CONVERSATIONS
    await session.execute(
        update(table)
        .where(and_(table.c.id == conversation_id, table.c.status != ConversationStatus.CLOSED))
        .values(status=ConversationStatus.OPEN, waiting_since=None, last_mt_at=now)
    )
