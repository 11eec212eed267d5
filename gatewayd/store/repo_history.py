"""What a client's messages were, read back: a conversation's thread (its MOs, the MTs answering it
with the operator who wrote each and why one failed, and the pushes sent to the client meanwhile), a
client's earlier messages, and the search over conversations that the conversation browser runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from gatewayd.store.accounts import Account
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage, MTPart
from gatewayd.store.mt.recipients import HELD_DETAILS
from gatewayd.store.subscribers import Subscriber

#: Receipt states that say why an MT was not delivered (``mt_parts.receipt_state``).
FAILED_RECEIPTS = ("UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN")
#: Failure codes besides the receipt states: refused by policy, refused by the SMSC at submit.
BANNED, OPTED_OUT, SUBMIT_REJECTED = "banned", "opted_out", "submit_rejected"


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    direction: Literal["mo", "mt"]
    id: int
    at: datetime
    text: str
    status: MTStatus | None  # the MT's; None for an MO
    kind: MTKind | None = None  # the MT's
    operator: str | None = None  # who wrote the MT (display name), None for automatic ones
    failure: str | None = None  # why the MT failed: a receipt state or one of the codes above
    conversation_id: int | None = None


def failure_code(status: MTStatus, last_error: str | None, receipt: str | None) -> str | None:
    """Why an MT that ended badly did: the receipt's state (UNDELIV, EXPIRED, REJECTD…), the policy
    refusal (``banned`` / ``opted_out`` / a premium hold's reason, as
    :func:`gatewayd.store.mt.recipients.refusal` words it) or a negative submit response; None for an
    MT that did not fail."""
    if status is MTStatus.REFUSED:
        error = last_error or ""
        held = next((reason for reason, detail in HELD_DETAILS if error.startswith(detail)), None)
        if held is not None:
            return held.value
        return OPTED_OUT if error.startswith("subscriber opted out") else BANNED
    if status not in (MTStatus.FAILED, MTStatus.EXPIRED):
        return None
    if receipt is not None:
        return receipt
    if status is MTStatus.EXPIRED:
        return "EXPIRED"
    return SUBMIT_REJECTED


async def thread_entries(
    session: AsyncSession,
    mo_where: ColumnElement[bool],
    mt_where: ColumnElement[bool],
    *,
    limit: int,
) -> list[ThreadEntry]:
    """The latest ``limit`` MOs and MTs matching the conditions, oldest first, each MT with its
    author and failure reason."""
    mos = await session.execute(
        select(MOMessage.id, MOMessage.received_at, MOMessage.text, MOMessage.conversation_id)
        .where(mo_where)
        .order_by(MOMessage.received_at.desc(), MOMessage.id.desc())
        .limit(limit)
    )
    mts = (
        await session.execute(
            select(
                MTMessage.id,
                MTMessage.created_at,
                MTMessage.text,
                MTMessage.status,
                MTMessage.kind,
                MTMessage.last_error,
                MTMessage.conversation_id,
                Account.display_name,
            )
            .outerjoin(Account, Account.id == MTMessage.operator_id)
            .where(mt_where)
            .order_by(MTMessage.created_at.desc(), MTMessage.id.desc())
            .limit(limit)
        )
    ).all()
    receipts = await failed_receipts(
        session, [row.id for row in mts if MTStatus(row.status) in (MTStatus.FAILED, MTStatus.EXPIRED)]
    )
    entries = [
        ThreadEntry("mo", row.id, row.received_at, row.text, None, None, None, None, row.conversation_id)
        for row in mos
    ]
    for row in mts:
        status = MTStatus(row.status)
        entries.append(
            ThreadEntry(
                "mt",
                row.id,
                row.created_at,
                row.text,
                status,
                MTKind(row.kind),
                row.display_name,
                failure_code(status, row.last_error, receipts.get(row.id)),
                row.conversation_id,
            )
        )
    entries.sort(key=lambda entry: (entry.at, entry.direction == "mt", entry.id))
    return entries[-limit:]


async def failed_receipts(session: AsyncSession, mt_ids: Sequence[int]) -> dict[int, str]:
    """The receipt state that says why each of these MTs was not delivered (its first such part)."""
    if not mt_ids:
        return {}
    rows = await session.execute(
        select(MTPart.mt_id, MTPart.receipt_state)
        .where(MTPart.mt_id.in_(sorted(mt_ids)), MTPart.receipt_state.in_(FAILED_RECEIPTS))
        .order_by(MTPart.part_no)
    )
    found: dict[int, str] = {}
    for row in rows:
        found.setdefault(row.mt_id, row.receipt_state)
    return found


def conversation_mts(conversation: Conversation) -> ColumnElement[bool]:
    """The MTs a conversation's thread shows: its own, and the pushes to its client while it was open."""
    push = and_(
        MTMessage.conversation_id.is_(None),
        MTMessage.subscriber_id == conversation.subscriber_id,
        MTMessage.kind == MTKind.PUSH,
        MTMessage.created_at >= conversation.opened_at,
    )
    if conversation.closed_at is not None:
        push = and_(push, MTMessage.created_at <= conversation.closed_at)
    return or_(MTMessage.conversation_id == conversation.id, push)


async def conversation_thread(
    session: AsyncSession, conversation: Conversation, limit: int
) -> list[ThreadEntry]:
    return await thread_entries(
        session, MOMessage.conversation_id == conversation.id, conversation_mts(conversation), limit=limit
    )


async def earlier_messages(
    session: AsyncSession, conversation: Conversation, limit: int
) -> list[ThreadEntry]:
    """The client's latest ``limit`` messages from before this conversation opened (their earlier
    conversations, and pushes before it)."""
    return await thread_entries(
        session,
        and_(
            MOMessage.subscriber_id == conversation.subscriber_id,
            MOMessage.received_at < conversation.opened_at,
            or_(MOMessage.conversation_id.is_(None), MOMessage.conversation_id != conversation.id),
        ),
        and_(
            MTMessage.subscriber_id == conversation.subscriber_id,
            MTMessage.created_at < conversation.opened_at,
            or_(MTMessage.conversation_id.is_(None), MTMessage.conversation_id != conversation.id),
        ),
        limit=limit,
    )


async def client_history(session: AsyncSession, subscriber_id: int, limit: int) -> list[ThreadEntry]:
    """The client's latest ``limit`` messages, whatever the conversation."""
    return await thread_entries(
        session,
        MOMessage.subscriber_id == subscriber_id,
        MTMessage.subscriber_id == subscriber_id,
        limit=limit,
    )


@dataclass(frozen=True, slots=True)
class SearchFilters:
    client_id: str | None = None
    alias: str | None = None
    operator_id: int | None = None
    text: str | None = None
    since: datetime | None = None  # opened at or after (UTC)
    until: datetime | None = None  # opened before (UTC)
    service: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: int
    client_id: str
    alias: str | None
    msisdn: str
    status: ConversationStatus
    service: str | None
    short_code: str
    operator: str | None
    opened_at: datetime
    last_at: datetime | None


def _contains(
    column: QueryableAttribute[str] | QueryableAttribute[str | None], text: str
) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


async def search_conversations(
    session: AsyncSession, filters: SearchFilters, *, before: int | None, limit: int
) -> list[ConversationRow]:
    """Conversations matching every filter given, newest first (by id), those with an id below
    ``before`` when it is given (the keyset of the next page)."""
    statement = (
        select(Conversation, Subscriber.client_id, Subscriber.alias, Subscriber.msisdn, Account.display_name)
        .join(Subscriber, Subscriber.id == Conversation.subscriber_id)
        .outerjoin(Account, Account.id == Conversation.assigned_operator_id)
        .order_by(Conversation.id.desc())
        .limit(limit)
    )
    if before is not None:
        statement = statement.where(Conversation.id < before)
    if filters.client_id:
        statement = statement.where(Subscriber.client_id == filters.client_id)
    if filters.alias:
        statement = statement.where(_contains(Subscriber.alias, filters.alias))
    if filters.service:
        statement = statement.where(Conversation.service == filters.service)
    if filters.since is not None:
        statement = statement.where(Conversation.opened_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(Conversation.opened_at < filters.until)
    if filters.operator_id is not None:
        wrote = exists().where(
            MTMessage.conversation_id == Conversation.id, MTMessage.operator_id == filters.operator_id
        )
        statement = statement.where(or_(Conversation.assigned_operator_id == filters.operator_id, wrote))
    if filters.text:
        in_mo = exists().where(
            MOMessage.conversation_id == Conversation.id, _contains(MOMessage.text, filters.text)
        )
        in_mt = exists().where(
            MTMessage.conversation_id == Conversation.id, _contains(MTMessage.text, filters.text)
        )
        statement = statement.where(or_(in_mo, in_mt))
    rows = (await session.execute(statement)).all()
    return [
        ConversationRow(
            conversation.id,
            client_id,
            alias,
            msisdn,
            conversation.status,
            conversation.service,
            conversation.short_code,
            operator,
            conversation.opened_at,
            max(
                (at for at in (conversation.last_mo_at, conversation.last_mt_at) if at is not None),
                default=None,
            ),
        )
        for conversation, client_id, alias, msisdn, operator in rows
    ]


async def search_choices(session: AsyncSession) -> tuple[list[tuple[int, str]], list[str]]:
    """The operators (accounts that hold or wrote in conversations) and services the search offers."""
    accounts = await session.execute(
        select(Account.id, Account.display_name).order_by(func.lower(Account.display_name))
    )
    services = await session.execute(
        select(Conversation.service)
        .where(Conversation.service.is_not(None))
        .distinct()
        .order_by(Conversation.service)
    )
    return [(row.id, row.display_name) for row in accounts], [s for s in services.scalars() if s]
