"""What the live monitor reads: every live (not closed) conversation with its client, carrier, holder
and last MT, and each operator's presence, load and limit.

A fixed number of statements whatever the number of conversations: the conversations joined with
their clients and holders, then their last MTs (two queries for 2,000 live conversations), the strip
in one. The monitor's colours (waiting, assigned but unanswered, answered, overdue) are a pure
function of a row and the clock (:func:`monitor_state`), so the page and its event stream agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import Account, Presence, Role
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.repo_assignment import present
from gatewayd.store.subscribers import Subscriber


class MonitorState(StrEnum):
    """A live conversation's colour on the monitor."""

    WAITING = "waiting"  # nobody holds it, the client waits for an answer
    ASSIGNED = "assigned"  # an operator holds it and has not answered yet
    ANSWERED = "answered"  # the operator answered; the chat goes on
    OVERDUE = "overdue"  # waiting for an answer (held or not) longer than its service allows


@dataclass(frozen=True, slots=True)
class MonitorFilters:
    """The monitor's filters; None: any. ``operator_id`` 0 means "nobody holds it"."""

    service: str | None = None
    short_code: str | None = None
    carrier: str | None = None
    operator_id: int | None = None
    state: MonitorState | None = None


@dataclass(frozen=True, slots=True)
class MonitorRow:
    conversation_id: int
    client_id: str
    alias: str | None
    status: ConversationStatus
    service: str | None
    short_code: str
    carrier: str | None
    operator_id: int | None
    operator_name: str | None
    opened_at: datetime
    waiting_since: datetime | None
    last_at: datetime | None
    last_mt_text: str | None
    last_mt_status: MTStatus | None

    @property
    def label(self) -> str:
        return self.alias or self.client_id

    @property
    def since(self) -> datetime:
        """Where the row's ticking clock starts: the wait for an answer, else the last message."""
        return self.waiting_since or self.last_at or self.opened_at


@dataclass(frozen=True, slots=True)
class OperatorLoad:
    """An operator on the monitor's strip: presence as assignment sees it (offline when they left the
    desk), open conversations and limit."""

    account_id: int
    username: str
    display_name: str
    presence: Presence
    open_conversations: int
    limit: int

    @property
    def has_room(self) -> bool:
        return self.presence is Presence.ONLINE and self.open_conversations < self.limit


def monitor_state(row: MonitorRow, now: datetime, overdue_after: timedelta) -> MonitorState:
    """The row's colour now; a conversation waiting longer than ``overdue_after`` is overdue."""
    if row.status is ConversationStatus.OPEN:
        return MonitorState.ANSWERED
    if row.waiting_since is not None and now - row.waiting_since > overdue_after:
        return MonitorState.OVERDUE
    return MonitorState.WAITING if row.operator_id is None else MonitorState.ASSIGNED


def _filtered(filters: MonitorFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Conversation.status != ConversationStatus.CLOSED]
    if filters.service is not None:
        where.append(Conversation.service == filters.service)
    if filters.short_code is not None:
        where.append(Conversation.short_code == filters.short_code)
    if filters.carrier is not None:
        where.append(Subscriber.carrier == filters.carrier)
    if filters.operator_id == 0:
        where.append(Conversation.assigned_operator_id.is_(None))
    elif filters.operator_id is not None:
        where.append(Conversation.assigned_operator_id == filters.operator_id)
    return where


async def _last_mts(
    session: AsyncSession, conversation_ids: Sequence[int] | None
) -> dict[int, tuple[str, MTStatus]]:
    """{conversation id: (text, status) of its newest MT} of the live conversations (or those named)."""
    newest = select(func.max(MTMessage.id)).where(MTMessage.conversation_id.is_not(None))
    if conversation_ids is not None:
        newest = newest.where(MTMessage.conversation_id.in_(sorted(set(conversation_ids))))
    else:
        live = select(Conversation.id).where(Conversation.status != ConversationStatus.CLOSED)
        newest = newest.where(MTMessage.conversation_id.in_(live.scalar_subquery()))
    newest = newest.group_by(MTMessage.conversation_id)
    rows = await session.execute(
        select(MTMessage.conversation_id, MTMessage.text, MTMessage.status).where(
            MTMessage.id.in_(newest.scalar_subquery())
        )
    )
    return {row.conversation_id: (row.text, row.status) for row in rows if row.conversation_id is not None}


async def live_conversations(
    session: AsyncSession,
    filters: MonitorFilters = MonitorFilters(),
    *,
    conversation_ids: Sequence[int] | None = None,
) -> list[MonitorRow]:
    """The live conversations matching ``filters`` (all, or those among ``conversation_ids``), the
    longest waiting first, then by their latest message. The state filter is the caller's
    (:func:`monitor_state` depends on the service's threshold and the clock)."""
    if conversation_ids is not None and not conversation_ids:
        return []
    statement = (
        select(Conversation, Subscriber.client_id, Subscriber.alias, Subscriber.carrier, Account.display_name)
        .join(Subscriber, Subscriber.id == Conversation.subscriber_id)
        .outerjoin(Account, Account.id == Conversation.assigned_operator_id)
        .where(*_filtered(filters))
        .order_by(
            Conversation.waiting_since.is_(None),
            Conversation.waiting_since,
            Conversation.last_mo_at.desc(),
            Conversation.id,
        )
    )
    if conversation_ids is not None:
        statement = statement.where(Conversation.id.in_(sorted(set(conversation_ids))))
    found = (await session.execute(statement)).all()
    last_mts = await _last_mts(session, conversation_ids)
    rows: list[MonitorRow] = []
    for conversation, client_id, alias, carrier, operator_name in found:
        last_mt = last_mts.get(conversation.id)
        last_at = max(
            (at for at in (conversation.last_mo_at, conversation.last_mt_at) if at is not None), default=None
        )
        rows.append(
            MonitorRow(
                conversation_id=conversation.id,
                client_id=client_id,
                alias=alias,
                status=conversation.status,
                service=conversation.service,
                short_code=conversation.short_code,
                carrier=carrier,
                operator_id=conversation.assigned_operator_id,
                operator_name=operator_name,
                opened_at=conversation.opened_at,
                waiting_since=conversation.waiting_since,
                last_at=last_at,
                last_mt_text=last_mt[0] if last_mt else None,
                last_mt_status=last_mt[1] if last_mt else None,
            )
        )
    return rows


async def conversations_of_mts(session: AsyncSession, mt_ids: Sequence[int]) -> set[int]:
    """The conversations the MTs ``mt_ids`` were sent in (a receipt's status event names the MT only)."""
    if not mt_ids:
        return set()
    found = select(MTMessage.conversation_id).where(
        MTMessage.id.in_(sorted(set(mt_ids))), MTMessage.conversation_id.is_not(None)
    )
    return {found_id for found_id in (await session.execute(found)).scalars() if found_id is not None}


async def closed_among(session: AsyncSession, conversation_ids: Sequence[int]) -> set[int]:
    """Those of ``conversation_ids`` no longer live (closed, or gone)."""
    if not conversation_ids:
        return set()
    wanted = sorted(set(conversation_ids))
    live = select(Conversation.id).where(
        Conversation.id.in_(wanted), Conversation.status != ConversationStatus.CLOSED
    )
    return set(wanted) - set((await session.execute(live)).scalars())


async def operator_loads(
    session: AsyncSession, now: datetime, grace: timedelta, idle: timedelta
) -> list[OperatorLoad]:
    """The strip: every operator who is not locked, and anyone else holding a live conversation, with
    their presence (offline unless present at the desk), open conversations and limit; by name."""
    held = (
        select(Conversation.assigned_operator_id, func.count().label("open"))
        .where(
            Conversation.assigned_operator_id.is_not(None),
            Conversation.status != ConversationStatus.CLOSED,
        )
        .group_by(Conversation.assigned_operator_id)
        .subquery()
    )
    statement = (
        select(Account, present(now, grace, idle).label("present"), func.coalesce(held.c.open, 0))
        .outerjoin(held, held.c.assigned_operator_id == Account.id)
        .where(or_(Account.role == Role.OPERATOR, held.c.open.is_not(None)), Account.locked.is_(False))
        .order_by(Account.display_name, Account.id)
    )
    loads: list[OperatorLoad] = []
    for account, is_present, open_count in await session.execute(statement):
        loads.append(
            OperatorLoad(
                account_id=account.id,
                username=account.username,
                display_name=account.display_name,
                presence=account.presence if is_present else Presence.OFFLINE,
                open_conversations=int(open_count),
                limit=account.max_open_conversations,
            )
        )
    return loads


def state_counts(states: Mapping[int, MonitorState]) -> dict[MonitorState, int]:
    counts = dict.fromkeys(MonitorState, 0)
    for state in states.values():
        counts[state] += 1
    return counts
