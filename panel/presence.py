"""Presence: an operator takes conversations only while at the desk.

An operator is *present* while their account is not locked, one of their web sessions is live and their
desk was seen within a short grace: the desk's event stream marks ``accounts.desk_seen_at`` when it
opens and at every heartbeat, and so does the presence control. Assignment hands conversations only to
present operators whose chosen presence is online (``panel.assignment``).

An operator who is no longer present -- signed out, session expired or revoked, account locked, desk
closed for longer than the grace -- *leaves*: their presence becomes offline and the conversations they
hold go back to the queue. Whether an operator leaves is decided again under their account row's lock
(``FOR UPDATE``; SQLite serializes writers), so several panel processes may look at the same operator
at once: one of them makes the change, the others find nothing left to do.

Whoever ends an operator's sessions or makes them leave announces it on the bus
(``<prefix>/account/<id>/changed``): their open desks check their session at once (a signed-out or
locked operator's stream ends) and the panels make them leave without waiting for the sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.bus.base import EventBus
from gatewayd.store.accounts import Account, Presence
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from panel.auth.sessions import live_session_exists
from panel.settings import PanelSettings


def present(now: datetime, grace: timedelta, settings: PanelSettings) -> ColumnElement[bool]:
    """SQL: the account is not locked, has a live session and its desk was seen within ``grace``."""
    return and_(
        Account.locked.is_(False),
        Account.desk_seen_at >= now - grace,
        live_session_exists(Account.id, settings, now),
    )


def _has_something_to_give_back() -> ColumnElement[bool]:
    holds = exists().where(
        Conversation.assigned_operator_id == Account.id, Conversation.status != ConversationStatus.CLOSED
    )
    return or_(Account.presence != Presence.OFFLINE, Account.desk_seen_at.is_not(None), holds)


def _leaving(now: datetime, grace: timedelta, settings: PanelSettings) -> ColumnElement[bool]:
    return and_(not_(present(now, grace, settings)), _has_something_to_give_back())


async def absent_operators(
    session: AsyncSession,
    now: datetime,
    grace: timedelta,
    settings: PanelSettings,
    account_ids: Sequence[int] | None = None,
) -> list[int]:
    """Accounts no longer present that still count as at the desk or hold conversations (all, or those
    among ``account_ids``)."""
    statement = select(Account.id).where(_leaving(now, grace, settings)).order_by(Account.id)
    if account_ids is not None:
        statement = statement.where(Account.id.in_(sorted(set(account_ids))))
    return list((await session.execute(statement)).scalars())


async def mark_left(
    session: AsyncSession, account_id: int, now: datetime, grace: timedelta, settings: PanelSettings
) -> bool:
    """Makes the operator leave if, checked again under their row's lock, they are still absent:
    presence offline, desk no longer seen. Returns whether they left (the caller then gives back what
    they hold, in the same transaction)."""
    still_absent = await session.scalar(
        select(Account.id).where(Account.id == account_id, _leaving(now, grace, settings)).with_for_update()
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


async def announce_account_change(bus: EventBus | None, account_id: int) -> None:
    """Tells every panel that ``account_id`` was signed out, locked or left (after the commit): the
    payload carries the id only, whoever hears it reads the rest from the database."""
    if bus is not None:
        await bus.publish(bus.topics.account_changed(account_id), {"account_id": account_id})
