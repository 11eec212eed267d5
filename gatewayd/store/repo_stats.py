"""Statistics for operators and reports: a client's SMS by date and hour, their latest messages, and the
figures of a day at a glance for the control panel's start page."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store._tables import table_of
from gatewayd.store.accounts import Account, Presence
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.repo_assignment import present

MO_MESSAGES = table_of(MOMessage)
MT_MESSAGES = table_of(MTMessage)


@dataclass(frozen=True, slots=True)
class HourlyCount:
    """SMS of one client in one local hour: ``received`` MOs from them, ``sent`` MTs to them."""

    day: date
    hour: int
    received: int
    sent: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    direction: Literal["mo", "mt"]
    id: int
    at: datetime
    short_code: str
    text: str
    status: str | None  # the MT's status; None for an MO


async def client_activity(
    session: AsyncSession, subscriber_id: int, since: datetime, until: datetime, zone: ZoneInfo
) -> list[HourlyCount]:
    """The client's SMS in [since, until) grouped by local date and hour (``zone``), oldest first.
    Grouping happens here, not in SQL, so local time is right on every backend; one client's range is
    small."""
    mo_times = await session.execute(
        select(MO_MESSAGES.c.received_at).where(
            MO_MESSAGES.c.subscriber_id == subscriber_id,
            MO_MESSAGES.c.received_at >= since,
            MO_MESSAGES.c.received_at < until,
        )
    )
    mt_times = await session.execute(
        select(MT_MESSAGES.c.created_at).where(
            MT_MESSAGES.c.subscriber_id == subscriber_id,
            MT_MESSAGES.c.created_at >= since,
            MT_MESSAGES.c.created_at < until,
        )
    )
    received = Counter(_bucket(at, zone) for at in mo_times.scalars())
    sent = Counter(_bucket(at, zone) for at in mt_times.scalars())
    return [
        HourlyCount(day, hour, received[(day, hour)], sent[(day, hour)])
        for day, hour in sorted(set(received) | set(sent))
    ]


def _bucket(at: datetime, zone: ZoneInfo) -> tuple[date, int]:
    local = at.astimezone(zone)
    return local.date(), local.hour


async def client_history(session: AsyncSession, subscriber_id: int, *, limit: int = 50) -> list[HistoryEntry]:
    """The client's latest MOs and MTs, newest first, at most ``limit`` in all."""
    mos = await session.execute(
        select(MO_MESSAGES.c.id, MO_MESSAGES.c.received_at, MO_MESSAGES.c.short_code, MO_MESSAGES.c.text)
        .where(MO_MESSAGES.c.subscriber_id == subscriber_id)
        .order_by(MO_MESSAGES.c.received_at.desc(), MO_MESSAGES.c.id.desc())
        .limit(limit)
    )
    mts = await session.execute(
        select(
            MT_MESSAGES.c.id,
            MT_MESSAGES.c.created_at,
            MT_MESSAGES.c.source,
            MT_MESSAGES.c.text,
            MT_MESSAGES.c.status,
        )
        .where(MT_MESSAGES.c.subscriber_id == subscriber_id)
        .order_by(MT_MESSAGES.c.created_at.desc(), MT_MESSAGES.c.id.desc())
        .limit(limit)
    )
    entries = [HistoryEntry("mo", row.id, row.received_at, row.short_code, row.text, None) for row in mos]
    entries += [
        HistoryEntry("mt", row.id, row.created_at, row.source, row.text, str(row.status)) for row in mts
    ]
    entries.sort(key=lambda entry: (entry.at, entry.direction == "mt", entry.id), reverse=True)
    return entries[:limit]


#: MTs that left the gateway for an SMSC (queued, refused and cancelled ones never did).
SENT_STATUSES = (MTStatus.SENDING, MTStatus.ACCEPTED, MTStatus.DELIVERED, MTStatus.FAILED, MTStatus.EXPIRED)
#: The final outcomes of a sent MT: delivered, or not.
OUTCOME_STATUSES = (MTStatus.DELIVERED, MTStatus.FAILED, MTStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class DayFigures:
    """The traffic of [since, until) and the state now. ``delivered_percent`` is of the MTs sent in the
    range that reached a final outcome (delivered, failed, expired); None while none has."""

    mo_received: int
    mt_sent: int
    mt_delivered: int
    mt_final: int
    waiting: int
    operators_online: int

    @property
    def delivered_percent(self) -> float | None:
        return None if self.mt_final == 0 else 100.0 * self.mt_delivered / self.mt_final


async def day_figures(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    *,
    now: datetime,
    grace: timedelta,
    idle: timedelta,
) -> DayFigures:
    """Four counting statements: MOs received and MTs created in [since, until), conversations waiting
    and operators online (presence online and at the desk, the assignment's rule) now."""
    received = await session.scalar(
        select(func.count()).where(MO_MESSAGES.c.received_at >= since, MO_MESSAGES.c.received_at < until)
    )
    status = MT_MESSAGES.c.status
    mts = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((status.in_(SENT_STATUSES), 1), else_=0)), 0),
                func.coalesce(func.sum(case((status == MTStatus.DELIVERED, 1), else_=0)), 0),
                func.coalesce(func.sum(case((status.in_(OUTCOME_STATUSES), 1), else_=0)), 0),
            ).where(MT_MESSAGES.c.created_at >= since, MT_MESSAGES.c.created_at < until)
        )
    ).one()
    waiting = await session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.status == ConversationStatus.WAITING)
    )
    online = await session.scalar(
        select(func.count())
        .select_from(Account)
        .where(Account.presence == Presence.ONLINE, present(now, grace, idle))
    )
    return DayFigures(
        mo_received=received or 0,
        mt_sent=int(mts[0]),
        mt_delivered=int(mts[1]),
        mt_final=int(mts[2]),
        waiting=waiting or 0,
        operators_online=online or 0,
    )
