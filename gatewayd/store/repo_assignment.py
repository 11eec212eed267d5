"""Who is at the desk and who holds which conversation: the statements of presence and assignment.

An operator is *present* while their account is not locked, one of their web sessions is live and their
desk was seen within a grace (``accounts.desk_seen_at``, marked by the desk's event stream). Taking,
giving back and closing a conversation are conditional updates (``WHERE assigned_operator_id ...``),
so two processes acting on one conversation at once never both succeed. Pool membership
(``account_pools``) is read and written here too. The policy (who gets what, in which turn, what an
operator in no pool answers) is the caller's (``gatewayd.assignment``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from gatewayd.store._tables import among
from gatewayd.store.accounts import Account, AccountPool, Presence, WebSession
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.subscribers import Subscriber


def live_session_exists(
    account_id: ColumnElement[int] | InstrumentedAttribute[int], idle: timedelta, now: datetime
) -> ColumnElement[bool]:
    """SQL for "the account has a live session": not revoked, not expired, not idle longer than
    ``idle`` (the rule of ``panel.auth.sessions.get_active_session``, over many accounts)."""
    return exists().where(
        WebSession.account_id == account_id,
        WebSession.revoked_at.is_(None),
        WebSession.expires_at > now,
        WebSession.last_seen_at >= now - idle,
    )


def present(now: datetime, grace: timedelta, idle: timedelta) -> ColumnElement[bool]:
    """SQL: the account is not locked, has a live session (idle at most ``idle``) and its desk was
    seen within ``grace``."""
    return and_(
        Account.locked.is_(False),
        Account.desk_seen_at >= now - grace,
        live_session_exists(Account.id, idle, now),
    )


def _has_something_to_give_back() -> ColumnElement[bool]:
    holds = exists().where(
        Conversation.assigned_operator_id == Account.id, Conversation.status != ConversationStatus.CLOSED
    )
    return or_(Account.presence != Presence.OFFLINE, Account.desk_seen_at.is_not(None), holds)


def _leaving(now: datetime, grace: timedelta, idle: timedelta) -> ColumnElement[bool]:
    return and_(not_(present(now, grace, idle)), _has_something_to_give_back())


async def absent_operators(
    session: AsyncSession,
    now: datetime,
    grace: timedelta,
    idle: timedelta,
    account_ids: Sequence[int] | None = None,
) -> list[int]:
    """Accounts no longer present that still count as at the desk or hold conversations (all, or those
    among ``account_ids``)."""
    statement = select(Account.id).where(_leaving(now, grace, idle)).order_by(Account.id)
    if account_ids is not None:
        statement = statement.where(among(Account.id, sorted(set(account_ids))))
    return list((await session.execute(statement)).scalars())


async def mark_left(
    session: AsyncSession, account_id: int, now: datetime, grace: timedelta, idle: timedelta
) -> bool:
    """Makes the operator leave if, checked again under their row's lock, they are still absent:
    presence offline, desk no longer seen. Returns whether they left (the caller then gives back what
    they hold, in the same transaction)."""
    still_absent = await session.scalar(
        select(Account.id).where(Account.id == account_id, _leaving(now, grace, idle)).with_for_update()
    )
    if still_absent is None:
        return False
    await session.execute(
        update(Account).where(Account.id == account_id).values(presence=Presence.OFFLINE, desk_seen_at=None)
    )
    return True


async def touch_desk(session: AsyncSession, account_id: int, now: datetime) -> None:
    """The operator's desk is live now."""
    await session.execute(update(Account).where(Account.id == account_id).values(desk_seen_at=now))


async def set_presence(session: AsyncSession, account_id: int, presence: Presence) -> Presence | None:
    """Sets the account's presence; returns the one it had (None: no such account)."""
    before = await session.scalar(select(Account.presence).where(Account.id == account_id))
    await session.execute(update(Account).where(Account.id == account_id).values(presence=presence))
    return before


async def lock_online_operators(
    session: AsyncSession, now: datetime, grace: timedelta, idle: timedelta
) -> dict[int, int]:
    """{operator id: max open conversations} of the online operators present at the desk, their rows
    locked until commit (so two panels never count the same operator's load at once)."""
    statement = (
        select(Account.id, Account.max_open_conversations)
        .where(Account.presence == Presence.ONLINE, present(now, grace, idle))
        .order_by(Account.id)
        .with_for_update()
    )
    return {row.id: row.max_open_conversations for row in await session.execute(statement)}


async def anyone_online(session: AsyncSession, now: datetime, grace: timedelta, idle: timedelta) -> bool:
    """Whether an operator is online and present at the desk (a plain read: no row locked)."""
    statement = select(Account.id).where(Account.presence == Presence.ONLINE, present(now, grace, idle))
    return (await session.scalar(statement.limit(1))) is not None


async def open_counts(session: AsyncSession, operator_ids: Sequence[int]) -> dict[int, int]:
    """Conversations not closed held by each operator."""
    if not operator_ids:
        return {}
    statement = (
        select(Conversation.assigned_operator_id, func.count())
        .where(
            among(Conversation.assigned_operator_id, sorted(operator_ids)),
            Conversation.status != ConversationStatus.CLOSED,
        )
        .group_by(Conversation.assigned_operator_id)
    )
    counts = {operator_id: 0 for operator_id in operator_ids}
    for operator_id, count in await session.execute(statement):
        if operator_id is not None:
            counts[operator_id] = int(count)
    return counts


async def unassigned_waiting(
    session: AsyncSession,
    limit: int,
    conversation_ids: Sequence[int] | None = None,
    *,
    pools: Collection[str] | None = None,
    default_pool: str | None = None,
    diverted: Collection[str] = (),
    diversion_pool: str | None = None,
) -> list[tuple[int, str | None]]:
    """(id, operator pool) of the waiting conversations nobody holds (all, or those among
    ``conversation_ids``; of ``pools`` only, when given: a conversation without a pool counts as
    ``default_pool``'s), oldest first. A conversation of a service in ``diverted`` counts as
    ``diversion_pool``'s whatever its own pool (the call-centre diversion). A banned or opted-out
    client's conversation is never among them (see :func:`barred_client`)."""
    pool: ColumnElement[str | None] = Conversation.operator_pool.expression
    if diverted and diversion_pool is not None:
        own = func.coalesce(Conversation.operator_pool, default_pool) if default_pool else pool
        pool = case((Conversation.service.in_(sorted(diverted)), diversion_pool), else_=own)
    statement = (
        select(Conversation.id, pool.label("pool"))
        .where(
            Conversation.assigned_operator_id.is_(None),
            Conversation.status == ConversationStatus.WAITING,
            not_(barred_client()),
        )
        .order_by(Conversation.waiting_since, Conversation.id)
        .limit(limit)
    )
    if conversation_ids is not None:
        statement = statement.where(among(Conversation.id, sorted(set(conversation_ids))))
    if pools is not None:
        of_pools: ColumnElement[bool] = pool.in_(sorted(pools))
        if default_pool is not None and default_pool in pools:
            of_pools = or_(of_pools, pool.is_(None))
        statement = statement.where(of_pools)
    return [(row.id, row.pool) for row in await session.execute(statement)]


def barred_client() -> ColumnElement[bool]:
    """SQL: the conversation's client is banned or opted out, so no operator is given it (its MOs are
    stored all the same; an unban or an ALTA makes it assignable again)."""
    return exists().where(
        Subscriber.id == Conversation.subscriber_id, or_(Subscriber.banned, Subscriber.opted_out)
    )


async def operator_pools(session: AsyncSession, account_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """The pools each of ``account_ids`` is listed in (an account listed in none is left out)."""
    if not account_ids:
        return {}
    rows = await session.execute(
        select(AccountPool.account_id, AccountPool.pool).where(
            among(AccountPool.account_id, sorted(set(account_ids)))
        )
    )
    found: dict[int, set[str]] = {}
    for account_id, pool in rows:
        found.setdefault(account_id, set()).add(pool)
    return {account_id: frozenset(pools) for account_id, pools in found.items()}


async def set_operator_pools(session: AsyncSession, account_id: int, pools: Collection[str]) -> None:
    """Lists ``account_id`` in exactly ``pools`` (none: no row)."""
    await session.execute(delete(AccountPool).where(AccountPool.account_id == account_id))
    if pools:
        await session.execute(
            insert(AccountPool), [{"account_id": account_id, "pool": pool} for pool in sorted(set(pools))]
        )


async def take_conversation(session: AsyncSession, conversation_id: int, operator_id: int) -> bool:
    """Gives the conversation to ``operator_id`` if nobody holds it and it is not closed; False when
    another took it first."""
    taken = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.assigned_operator_id.is_(None),
            Conversation.status != ConversationStatus.CLOSED,
        )
        .values(assigned_operator_id=operator_id)
    )
    return getattr(taken, "rowcount", 0) == 1


async def release_held(session: AsyncSession, operator_id: int) -> list[int]:
    """Gives back every conversation ``operator_id`` holds that is not closed; returns their ids."""
    held = (
        select(Conversation.id)
        .where(
            Conversation.assigned_operator_id == operator_id,
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(Conversation.id)
    )
    released: list[int] = []
    for conversation_id in list((await session.execute(held)).scalars()):
        result = await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.assigned_operator_id == operator_id)
            .values(assigned_operator_id=None)
        )
        if getattr(result, "rowcount", 0) == 1:
            released.append(conversation_id)
    return released


def _closing(now: datetime) -> dict[str, object]:
    """The values that close a conversation (the desk's close and a session reset alike)."""
    return {"status": ConversationStatus.CLOSED, "waiting_since": None, "closed_at": now}


async def release_clients(session: AsyncSession, subscriber_ids: Collection[int]) -> list[tuple[int, int]]:
    """Takes every conversation of these subscribers that is not closed from the operator holding it;
    returns (conversation id, previous operator id) of those released."""
    if not subscriber_ids:
        return []
    return await release_conversations(
        session, await _held(session, among(Conversation.subscriber_id, sorted(set(subscriber_ids))))
    )


async def barred_held(session: AsyncSession, limit: int) -> list[tuple[int, int]]:
    """(conversation id, operator id) of conversations an operator holds, not closed, whose client is
    banned or opted out (see :func:`barred_client`): a plain read, no row locked."""
    return await _held(session, barred_client(), limit)


async def _held(
    session: AsyncSession, condition: ColumnElement[bool], limit: int | None = None
) -> list[tuple[int, int]]:
    statement = (
        select(Conversation.id, Conversation.assigned_operator_id)
        .where(
            condition,
            Conversation.assigned_operator_id.is_not(None),
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(Conversation.id)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [
        (conversation_id, operator_id)
        for conversation_id, operator_id in (await session.execute(statement)).all()
        if operator_id is not None
    ]


async def release_conversations(
    session: AsyncSession, held: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Takes each (conversation, operator) from that operator if they still hold it and its client is
    still banned or opted out (an unban or an ALTA since the look that found it keeps it with its
    operator); returns those released."""
    released: list[tuple[int, int]] = []
    for conversation_id, operator_id in held:
        result = await session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.assigned_operator_id == operator_id,
                barred_client(),
            )
            .values(assigned_operator_id=None)
        )
        if getattr(result, "rowcount", 0) == 1:
            released.append((conversation_id, operator_id))
    return released


async def close_held(session: AsyncSession, conversation_id: int, operator_id: int, now: datetime) -> bool:
    """Closes the conversation if ``operator_id`` holds it and it is open; whether it did."""
    result = await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.assigned_operator_id == operator_id,
            Conversation.status != ConversationStatus.CLOSED,
        )
        .values(**_closing(now))
    )
    return getattr(result, "rowcount", 0) == 1


async def close_open_of(session: AsyncSession, subscriber_id: int, now: datetime) -> list[int]:
    """Closes every conversation of the subscriber that is not closed, whoever holds it (a session
    reset); returns their ids."""
    open_ids = list(
        (
            await session.execute(
                select(Conversation.id)
                .where(
                    Conversation.subscriber_id == subscriber_id,
                    Conversation.status != ConversationStatus.CLOSED,
                )
                .order_by(Conversation.id)
                .with_for_update()
            )
        ).scalars()
    )
    if open_ids:
        await session.execute(
            update(Conversation)
            .where(among(Conversation.id, open_ids), Conversation.status != ConversationStatus.CLOSED)
            .values(**_closing(now))
        )
    return open_ids


async def lock_holders(
    session: AsyncSession, conversation_ids: Collection[int], *, assignable: bool
) -> dict[int, int | None]:
    """{conversation id: its holder (None: nobody)} of those of ``conversation_ids`` not closed (and,
    when ``assignable``, whose client is neither banned nor opted out), their rows locked until commit
    (``FOR UPDATE`` on PostgreSQL; SQLite serializes writers)."""
    if not conversation_ids:
        return {}
    statement = (
        select(Conversation.id, Conversation.assigned_operator_id)
        .where(
            among(Conversation.id, sorted(set(conversation_ids))),
            Conversation.status != ConversationStatus.CLOSED,
        )
        .order_by(Conversation.id)
        .with_for_update()
    )
    if assignable:
        statement = statement.where(not_(barred_client()))
    return {row.id: row.assigned_operator_id for row in await session.execute(statement)}


async def move_conversation(
    session: AsyncSession, conversation_id: int, holder: int | None, operator_id: int | None
) -> bool:
    """Hands the conversation from ``holder`` (None: the queue) to ``operator_id`` (None: back to the
    queue) if ``holder`` still holds it and it is open; whether it did."""
    held_by = (
        Conversation.assigned_operator_id.is_(None)
        if holder is None
        else Conversation.assigned_operator_id == holder
    )
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, held_by, Conversation.status != ConversationStatus.CLOSED)
        .values(assigned_operator_id=operator_id)
    )
    return getattr(result, "rowcount", 0) == 1
