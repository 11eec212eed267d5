"""Assignment of waiting conversations to operators.

A conversation nobody holds goes to an operator who is at the desk (``panel.presence``) with their
presence online, in turn (round robin), as long as they hold fewer open conversations than their
``max_open_conversations``. A conversation already held stays with its operator for every later
message. An operator who goes offline or leaves the desk (signed out, session over, locked, desk closed
past the grace) gives back every conversation they hold that is not closed: those waiting for an answer
are handed to someone else at once, the others when their client writes again. A paused operator keeps
what they hold and takes nothing new.

Safe with several panel processes on one database: the online operators' account rows are locked
(``FOR UPDATE`` on PostgreSQL; SQLite serializes writers with ``BEGIN IMMEDIATE``) before their load
is counted, and each conversation is taken with ``UPDATE ... WHERE assigned_operator_id IS NULL``, so
a conversation is never given twice and no operator goes over their limit (the statements:
``gatewayd.store.repo_assignment``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.bus.base import EventBus
from gatewayd.bus.events import Event
from gatewayd.store.accounts import Presence
from gatewayd.store.base import utcnow
from gatewayd.store.repo_assignment import (
    absent_operators,
    close_held,
    lock_online_operators,
    mark_left,
    open_counts,
    release_held,
    set_presence,
    take_conversation,
    touch_desk,
    unassigned_waiting,
)
from panel.presence import announce_account_change, session_idle
from panel.settings import PanelSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AssignmentPolicy:
    """``overdue_after``: a conversation waiting longer is flagged; ``sweep_interval``: seconds between
    passes over everything waiting (and over who left the desk); ``batch``: conversations handed out per
    pass at most; ``presence_grace``: how long an operator's desk may go unseen (its stream closed, the
    browser gone) before they leave. Longer than the desk's heartbeat, which marks a live desk."""

    overdue_after: timedelta = timedelta(minutes=2)
    sweep_interval: float = 2.0
    batch: int = 200
    presence_grace: timedelta = timedelta(seconds=40)


@dataclass(frozen=True, slots=True)
class Assignment:
    """A conversation changed hands: to ``operator_id`` (None: back to the waiting pool)."""

    conversation_id: int
    operator_id: int | None
    previous_operator_id: int | None
    at: datetime

    def event_payload(self) -> dict[str, object]:
        return {
            "conversation_id": self.conversation_id,
            "operator_id": self.operator_id,
            "previous_operator_id": self.previous_operator_id,
            "at": self.at.isoformat(),
        }


class RoundRobin:
    """Remembers who got the last conversation, so the next one goes to the following operator."""

    def __init__(self) -> None:
        self.last_operator_id: int | None = None

    def turn_order(self, operator_ids: Sequence[int]) -> list[int]:
        ordered = sorted(operator_ids)
        if self.last_operator_id is None:
            return ordered
        after = [operator_id for operator_id in ordered if operator_id > self.last_operator_id]
        return after + [operator_id for operator_id in ordered if operator_id <= self.last_operator_id]


async def assign_waiting(
    session: AsyncSession,
    robin: RoundRobin,
    now: datetime,
    *,
    limit: int,
    grace: timedelta,
    idle: timedelta,
    conversation_ids: Sequence[int] | None = None,
) -> list[Assignment]:
    """Hands waiting conversations nobody holds (all, or those among ``conversation_ids``) to the online
    operators present at the desk (their desk seen within ``grace``, a session idle at most ``idle``)
    with free slots, oldest first. The caller frames the transaction and publishes after committing."""
    if conversation_ids is not None and not conversation_ids:
        return []
    waiting = await unassigned_waiting(session, limit, conversation_ids)
    if not waiting:
        return []
    capacity = await lock_online_operators(session, now, grace, idle)
    load = await open_counts(session, list(capacity))
    assignments: list[Assignment] = []
    for conversation_id in waiting:
        free = [operator_id for operator_id in capacity if load[operator_id] < capacity[operator_id]]
        if not free:
            break
        operator_id = robin.turn_order(free)[0]
        if not await take_conversation(session, conversation_id, operator_id):  # another panel took it first
            continue
        robin.last_operator_id = operator_id
        load[operator_id] += 1
        assignments.append(Assignment(conversation_id, operator_id, None, now))
    return assignments


async def give_back(session: AsyncSession, operator_id: int, now: datetime) -> list[Assignment]:
    """Gives back every conversation ``operator_id`` holds that is not closed: nobody would answer it."""
    return [
        Assignment(conversation_id, None, operator_id, now)
        for conversation_id in await release_held(session, operator_id)
    ]


class AssignmentService:
    """Assigns in the panel process: on each MO event, when an operator comes online or frees a slot,
    and in a periodic sweep; makes operators who left the desk give back what they hold (on their
    account's event and in the sweep); publishes ``<prefix>/conversation/<id>/assigned`` after each
    commit."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus | None,
        policy: AssignmentPolicy,
        settings: PanelSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.policy = policy
        self.settings = settings
        self.robin = RoundRobin()

    async def assign(self, conversation_ids: Sequence[int] | None = None) -> list[Assignment]:
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            done = await assign_waiting(
                session,
                self.robin,
                now,
                limit=self.policy.batch,
                grace=self.policy.presence_grace,
                idle=session_idle(self.settings),
                conversation_ids=conversation_ids,
            )
        await self.publish(done)
        return done

    async def change_presence(self, account_id: int, presence: Presence) -> list[Assignment]:
        """Sets the operator's presence from their desk (which is live, then); offline gives back what
        they hold, online takes what waits. Returns the changes of hands."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            await set_presence(session, account_id, presence)
            await touch_desk(session, account_id, now)
            released = []
            if presence is Presence.OFFLINE:
                released = await give_back(session, account_id, now)
        await self.publish(released)
        return released + await self.assign()

    async def settle_presence(self, account_ids: Sequence[int] | None = None) -> list[Assignment]:
        """Makes the operators who left the desk (all, or those among ``account_ids``) give back what
        they hold, announces each on the bus, then hands out what waits. Returns the changes of hands."""
        now = utcnow()
        grace = self.policy.presence_grace
        idle = session_idle(self.settings)
        async with self.sessionmaker() as session:
            absent = await absent_operators(session, now, grace, idle, account_ids)
        released: list[Assignment] = []
        for account_id in absent:
            async with self.sessionmaker() as session, session.begin():
                left = await mark_left(session, account_id, now, grace, idle)
                given_back = await give_back(session, account_id, now) if left else []
            if left:
                logger.info("presence.left account_id=%s released=%d", account_id, len(given_back))
                await self.publish(given_back)
                await announce_account_change(self.bus, account_id)
                released += given_back
        if not released:
            return []
        return released + await self.assign()

    async def close(self, conversation_id: int, operator_id: int) -> bool:
        """Closes a conversation its operator holds, then fills the freed slot."""
        async with self.sessionmaker() as session, session.begin():
            closed = await close_held(session, conversation_id, operator_id, utcnow())
        if closed:
            await self.assign()
        return closed

    async def on_mo_event(self, event: Event) -> None:
        conversation_id = event.payload.get("conversation_id")
        if isinstance(conversation_id, int) and not isinstance(conversation_id, bool):
            await self.assign([conversation_id])

    async def publish(self, assignments: Sequence[Assignment]) -> None:
        if self.bus is None:
            return
        for assignment in assignments:
            topic = self.bus.topics.conversation_assigned(assignment.conversation_id)
            await self.bus.publish(topic, assignment.event_payload())

    async def on_account_event(self, event: Event) -> None:
        account_id = event.payload.get("account_id")
        if isinstance(account_id, int) and not isinstance(account_id, bool):
            await self.settle_presence([account_id])

    async def sweep(self) -> None:
        """One periodic pass over who left the desk and everything waiting; a failure is logged, the
        next pass tries again."""
        try:
            await self.settle_presence()
            await self.assign()
        except Exception:  # a database hiccup must not end the sweeping
            logger.exception("assignment sweep failed")
