"""What the operator's desk reads and writes: their queue, a conversation's thread and client, what a
reply or a push is sent from, the MTs and MOs its live updates name."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import among
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.repo_history import (
    ThreadEntry,
    conversation_thread,
    earlier_messages,
    failed_receipts,
    failure_code,
)
from gatewayd.store.subscribers import Subscriber

THREAD_LIMIT = 100
#: How many of a returning client's earlier messages the desk shows above the thread.
EARLIER_LIMIT = 50
SNIPPET_LENGTH = 80


@dataclass(frozen=True, slots=True)
class QueueItem:
    conversation_id: int
    client_id: str
    alias: str | None
    status: ConversationStatus
    waiting_since: datetime | None
    overdue: bool
    last_text: str
    last_at: datetime | None

    @property
    def label(self) -> str:
        return self.alias or self.client_id


@dataclass(frozen=True, slots=True)
class ConversationView:
    conversation: Conversation
    subscriber: Subscriber
    thread: list[ThreadEntry]
    #: The client's messages from before this conversation (their earlier ones), oldest first.
    earlier: list[ThreadEntry]


def snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_LENGTH else flat[: SNIPPET_LENGTH - 1] + "…"


async def _last_mo_texts(session: AsyncSession, conversation_ids: Sequence[int]) -> dict[int, str]:
    if not conversation_ids:
        return {}
    newest = (
        select(func.max(MOMessage.id))
        .where(among(MOMessage.conversation_id, sorted(conversation_ids)))
        .group_by(MOMessage.conversation_id)
    )
    rows = await session.execute(
        select(MOMessage.conversation_id, MOMessage.text).where(MOMessage.id.in_(newest.scalar_subquery()))
    )
    return {row.conversation_id: row.text for row in rows}


def is_overdue(waiting_since: datetime | None, now: datetime, overdue_after: timedelta) -> bool:
    """A conversation waiting for an answer longer than ``overdue_after`` is flagged on the desk."""
    return waiting_since is not None and now - waiting_since > overdue_after


async def operator_queue(
    session: AsyncSession,
    operator_id: int,
    now: datetime,
    overdue_after: timedelta,
    *,
    conversation_ids: Sequence[int] | None = None,
) -> list[QueueItem]:
    """The conversations the operator holds, not closed: waiting ones first (oldest first), then the
    others by their latest message; those waiting longer than ``overdue_after`` flagged."""
    statement = (
        select(Conversation, Subscriber.client_id, Subscriber.alias)
        .join(Subscriber, Subscriber.id == Conversation.subscriber_id)
        .where(
            Conversation.assigned_operator_id == operator_id,
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(
            case((Conversation.status == ConversationStatus.WAITING, 0), else_=1),
            Conversation.waiting_since,
            Conversation.last_mo_at.desc(),
            Conversation.id,
        )
    )
    if conversation_ids is not None:
        statement = statement.where(among(Conversation.id, sorted(conversation_ids)))
    rows = (await session.execute(statement)).all()
    texts = await _last_mo_texts(session, [row.Conversation.id for row in rows])
    items: list[QueueItem] = []
    for conversation, client_id, alias in rows:
        items.append(
            QueueItem(
                conversation_id=conversation.id,
                client_id=client_id,
                alias=alias,
                status=conversation.status,
                waiting_since=conversation.waiting_since,
                overdue=conversation.status is ConversationStatus.WAITING
                and is_overdue(conversation.waiting_since, now, overdue_after),
                last_text=snippet(texts.get(conversation.id, "")),
                last_at=conversation.last_mo_at,
            )
        )
    return items


async def conversation_view(session: AsyncSession, conversation_id: int) -> ConversationView | None:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    subscriber = await session.get(Subscriber, conversation.subscriber_id)
    if subscriber is None:
        return None
    thread = await conversation_thread(session, conversation, THREAD_LIMIT)
    earlier = await earlier_messages(session, conversation, EARLIER_LIMIT)
    return ConversationView(conversation, subscriber, thread, earlier)


async def next_waiting(session: AsyncSession, operator_id: int) -> int | None:
    """The operator's conversation that has waited longest for an answer."""
    statement = (
        select(Conversation.id)
        .where(
            Conversation.assigned_operator_id == operator_id,
            Conversation.status == ConversationStatus.WAITING,
        )
        .order_by(Conversation.waiting_since, Conversation.id)
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class PushRow:
    id: int
    client_id: str | None
    text: str
    status: MTStatus
    created_at: datetime
    #: Where it went (the panel hides it, and the text's ``{telefono}``, without the MSISDN permission).
    destination: str
    #: While queued, when it may leave (a push held for the client's quiet hours: their end).
    next_attempt_at: datetime
    country: str | None


async def recent_pushes(session: AsyncSession, operator_id: int, *, limit: int = 20) -> list[PushRow]:
    rows = await session.execute(
        select(
            MTMessage.id,
            Subscriber.client_id,
            MTMessage.text,
            MTMessage.status,
            MTMessage.created_at,
            MTMessage.destination,
            MTMessage.next_attempt_at,
            Subscriber.country,
        )
        .outerjoin(Subscriber, Subscriber.id == MTMessage.subscriber_id)
        .where(MTMessage.operator_id == operator_id, MTMessage.kind == MTKind.PUSH)
        .order_by(MTMessage.id.desc())
        .limit(limit)
    )
    return [
        PushRow(
            row.id,
            row.client_id,
            row.text,
            MTStatus(row.status),
            row.created_at,
            row.destination,
            row.next_attempt_at,
            row.country,
        )
        for row in rows
    ]


async def watched_mt_ids(session: AsyncSession, operator_id: int) -> set[int]:
    """MTs not final yet whose status the operator's desk shows: in their conversations or sent by them."""
    final = [status for status in MTStatus if status.is_final]
    mine = select(Conversation.id).where(
        Conversation.assigned_operator_id == operator_id, Conversation.status != ConversationStatus.CLOSED
    )
    rows = await session.execute(
        select(MTMessage.id).where(
            MTMessage.status.not_in(final),
            (MTMessage.operator_id == operator_id) | MTMessage.conversation_id.in_(mine.scalar_subquery()),
        )
    )
    return set(rows.scalars())


async def held_conversation_ids(session: AsyncSession, operator_id: int) -> set[int]:
    rows = await session.execute(
        select(Conversation.id).where(
            Conversation.assigned_operator_id == operator_id, Conversation.status != ConversationStatus.CLOSED
        )
    )
    return set(rows.scalars())


async def sent_mt_status(session: AsyncSession, mt_id: int, operator_id: int) -> MTStatus | None:
    """The status of an MT this operator sent (None for anyone else's), for the "reply queued" notice."""
    status = await session.scalar(
        select(MTMessage.status).where(MTMessage.id == mt_id, MTMessage.operator_id == operator_id)
    )
    return MTStatus(status) if status is not None else None


@dataclass(frozen=True, slots=True)
class MOEntry:
    id: int
    conversation_id: int | None
    text: str
    received_at: datetime


async def mo_entries(session: AsyncSession, mo_ids: Sequence[int]) -> dict[int, MOEntry]:
    """The MOs by id, as the database holds them (what the desk shows never comes from an event)."""
    if not mo_ids:
        return {}
    rows = await session.execute(
        select(MOMessage.id, MOMessage.conversation_id, MOMessage.text, MOMessage.received_at).where(
            among(MOMessage.id, sorted(set(mo_ids)))
        )
    )
    return {row.id: MOEntry(row.id, row.conversation_id, row.text, row.received_at) for row in rows}


@dataclass(frozen=True, slots=True)
class MTState:
    id: int
    status: MTStatus
    operator_id: int | None
    conversation_id: int | None
    #: Why it failed (:func:`gatewayd.store.repo_history.failure_code`), None while it has not.
    failure: str | None = None


async def mt_states(session: AsyncSession, mt_ids: Sequence[int]) -> dict[int, MTState]:
    """The MTs' current statuses, owners and failure reasons by id."""
    if not mt_ids:
        return {}
    rows = (
        await session.execute(
            select(
                MTMessage.id,
                MTMessage.status,
                MTMessage.operator_id,
                MTMessage.conversation_id,
                MTMessage.last_error,
            ).where(among(MTMessage.id, sorted(set(mt_ids))))
        )
    ).all()
    ended = [row.id for row in rows if MTStatus(row.status) in (MTStatus.FAILED, MTStatus.EXPIRED)]
    receipts = await failed_receipts(session, ended)
    return {
        row.id: MTState(
            row.id,
            MTStatus(row.status),
            row.operator_id,
            row.conversation_id,
            failure_code(MTStatus(row.status), row.last_error, receipts.get(row.id)),
        )
        for row in rows
    }


async def conversation_holder(session: AsyncSession, conversation_id: int) -> int | None:
    """The operator holding the conversation, if it is not closed."""
    holder: int | None = await session.scalar(
        select(Conversation.assigned_operator_id).where(
            Conversation.id == conversation_id, Conversation.status != ConversationStatus.CLOSED
        )
    )
    return holder


@dataclass(frozen=True, slots=True)
class LastMO:
    """The subscriber's latest MO: a reply or a push leaves by its carrier, bind and short code; a
    reply's message variables are its (``gatewayd.outbox``)."""

    id: int
    carrier: str
    bind_name: str | None
    short_code: str
    text: str
    received_at: datetime
    country: str | None
    service: str | None


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """A conversation an operator answers: who holds it, its subscriber, its latest MO."""

    conversation: Conversation
    subscriber: Subscriber
    last_mo: LastMO | None


async def get_conversation(session: AsyncSession, conversation_id: int) -> Conversation | None:
    return await session.get(Conversation, conversation_id)


async def reply_target(session: AsyncSession, conversation_id: int) -> ReplyTarget | None:
    """The conversation with its subscriber and latest MO (None when there is no such conversation)."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    subscriber = await session.get(Subscriber, conversation.subscriber_id)
    assert subscriber is not None  # the write paths create or lock the parent with the child
    return ReplyTarget(
        conversation, subscriber, await _last_mo(session, MOMessage.conversation_id == conversation_id)
    )


async def last_mo_of_subscriber(session: AsyncSession, subscriber_id: int) -> LastMO | None:
    """The subscriber's latest MO, whatever the conversation (a push leaves by it)."""
    return (await last_mos_of_subscribers(session, [subscriber_id])).get(subscriber_id)


async def last_mos_of_subscribers(
    session: AsyncSession, subscriber_ids: Collection[int]
) -> dict[int, LastMO]:
    """:func:`last_mo_of_subscriber` for many subscribers in one statement (a batch of pushes): each
    one's latest MO by subscriber id; those without an MO are left out."""
    if not subscriber_ids:
        return {}
    latest = (
        select(MOMessage.id)
        .where(MOMessage.subscriber_id == Subscriber.id)
        .order_by(MOMessage.received_at.desc(), MOMessage.id.desc())
        .limit(1)
        .correlate(Subscriber)
        .scalar_subquery()
    )
    statement = select(MOMessage.subscriber_id, *_LAST_MO_COLUMNS).where(
        MOMessage.id.in_(select(latest).where(among(Subscriber.id, sorted(set(subscriber_ids)))))
    )
    return {row.subscriber_id: _as_last_mo(row) for row in (await session.execute(statement)).all()}


_LAST_MO_COLUMNS = (
    MOMessage.id,
    MOMessage.carrier,
    MOMessage.bind_name,
    MOMessage.short_code,
    MOMessage.text,
    MOMessage.received_at,
    MOMessage.country,
    MOMessage.service,
)


async def _last_mo(session: AsyncSession, where: ColumnElement[bool]) -> LastMO | None:
    row = (
        await session.execute(
            select(*_LAST_MO_COLUMNS)
            .where(where)
            .order_by(MOMessage.received_at.desc(), MOMessage.id.desc())
            .limit(1)
        )
    ).one_or_none()
    return None if row is None else _as_last_mo(row)


def _as_last_mo(row: Row[*tuple[Any, ...]]) -> LastMO:
    return LastMO(
        row.id,
        row.carrier,
        row.bind_name,
        row.short_code,
        row.text,
        row.received_at,
        row.country,
        row.service,
    )
