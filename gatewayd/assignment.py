"""Assignment of waiting conversations to operators: the domain rule, in one place.

A conversation nobody holds goes to an operator who is at the desk (see *presence* below) with their
presence online, **of the conversation's operator pool**, in turn (round robin per pool), as long as
they hold fewer open conversations than their ``max_open_conversations``. A conversation nobody of its
pool can take waits, whoever else is online. A conversation already held stays with its operator for
every later message. An operator who goes offline or leaves the desk (signed out, session over,
locked, desk closed past the grace) gives back every conversation they hold that is not closed: those
waiting for an answer are handed to someone else at once, the others when their client writes again.
A paused operator keeps what they hold and takes nothing new. A banned or opted-out client's
conversation is never handed out (their MOs are stored all the same); a client banned while an operator
holds their conversation is taken from that operator (:func:`withdraw_clients`, in the ban's
transaction; and by the sweep, :meth:`AssignmentService.withdraw_barred`, for a BAJA or a ban made
elsewhere).

**Pools.** The MO routing table decides each MO's operator pool (``[[services]] operator_pool``,
``[[routes.mo]] operator_pool``, :data:`gatewayd.routes.DEFAULT_POOL` for the built-in default route);
the conversation keeps the pool of the MO that opened it (``conversations.operator_pool``; none for a
conversation opened before pools were stored: the default pool's). An operator answers the pools
listed for them (``account_pools``, ``gatewayd user pools``); an operator listed in no pool answers the
default pool, so a gateway that names no pool works as before: everybody answers everything.
``conversations.callcentre`` keeps the route's call-centre flag.

**Call-centre diversion.** A service diverted to the call centre (``gatewayd.diversion``: the admin's
switch, else ``[[services]] callcentre``) has every conversation nobody holds offered to the
call-centre pool (``[assignment] callcentre_pool``) instead of its own pool, those already waiting
too; a conversation already held stays with its operator. The service reads the switches from a
cache refreshed on the bus event of a switch and at every sweep, never per MO.

**Presence.** An operator is present while their account is not locked, one of their web sessions is
live (idle at most ``session_idle``) and their desk was seen within ``presence_grace`` (the desk's event
stream marks ``accounts.desk_seen_at`` at every heartbeat).

**Where it runs.** The daemon runs an :class:`AssignmentService` whether or not a panel is open: it
hands out the conversations of the MOs it commits (their events on its own bus) and sweeps everything
waiting and everyone who left the desk. The panel calls the same service for what an operator does
(presence, closing a conversation) and for the events it hears. Safe with any number of processes on
one database: the online operators' account rows are locked (``FOR UPDATE`` on PostgreSQL; SQLite
serializes writers) before their load is counted, and each conversation is taken with ``UPDATE ...
WHERE assigned_operator_id IS NULL``, so a conversation is never given twice and no operator goes over
their limit (the statements: ``gatewayd.store.repo_assignment``). After each commit the service
publishes ``<prefix>/conversation/<id>/assigned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.bus.base import EventBus
from gatewayd.bus.events import Event
from gatewayd.diversion import DiversionCache
from gatewayd.routes import DEFAULT_POOL
from gatewayd.store.accounts import Presence
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.base import utcnow
from gatewayd.store.repo_assignment import (
    absent_operators,
    anyone_online,
    barred_held,
    close_held,
    lock_holders,
    lock_online_operators,
    mark_left,
    move_conversation,
    open_counts,
    operator_pools,
    release_clients,
    release_conversations,
    release_held,
    set_presence,
    take_conversation,
    touch_desk,
    unassigned_waiting,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_POOL",
    "SESSION_IDLE_MINUTES",
    "Assignment",
    "AssignmentPolicy",
    "AssignmentService",
    "ReassignRefused",
    "RoundRobin",
    "announce_account_change",
    "assign_waiting",
    "choose_operator",
    "give_back",
    "withdraw_clients",
    "pool_of",
    "pools_served",
    "publish_assignments",
    "serves",
]

#: How long a web session may go unused and still count as live (``PanelSettings`` starts from it).
SESSION_IDLE_MINUTES = 120


@dataclass(frozen=True, slots=True)
class AssignmentPolicy:
    """``overdue_after``: a conversation waiting longer is flagged; ``sweep_interval``: seconds between
    passes over everything waiting (and over who left the desk); ``batch``: conversations handed out per
    pass at most; ``presence_grace``: how long an operator's desk may go unseen (its stream closed, the
    browser gone) before they leave. Longer than the desk's heartbeat, which marks a live desk;
    ``session_idle``: how long a web session may go unused and still count as live;
    ``callcentre_pool``: the pool diverted services' conversations go to."""

    overdue_after: timedelta = timedelta(minutes=2)
    sweep_interval: float = 2.0
    batch: int = 200
    presence_grace: timedelta = timedelta(seconds=40)
    session_idle: timedelta = timedelta(minutes=SESSION_IDLE_MINUTES)
    callcentre_pool: str = "callcentre"
    #: The daemon hands out the conversations of newly committed MOs at most this often (seconds): one
    #: pass for every MO batch would cost a transaction per batch, for nothing a person could notice.
    note_interval: float = 0.02
    #: After a pass found nobody online, the next pass of noted conversations waits this long (an
    #: operator going online is handed what waits by their own presence change, in the panel).
    absence_recheck: float = 0.25


@dataclass(frozen=True, slots=True)
class Assignment:
    """A conversation changed hands: to ``operator_id`` (None: back to the waiting queue)."""

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


def pool_of(conversation_pool: str | None) -> str:
    """The pool a conversation belongs to (one opened before pools were stored: the default pool)."""
    return conversation_pool or DEFAULT_POOL


def pools_served(memberships: Collection[str]) -> frozenset[str]:
    """The pools an operator answers: those they are listed in, the default pool when none."""
    return frozenset(memberships) if memberships else frozenset((DEFAULT_POOL,))


def serves(memberships: Collection[str], conversation_pool: str | None) -> bool:
    """Whether an operator listed in ``memberships`` may be offered a conversation of
    ``conversation_pool``."""
    return pool_of(conversation_pool) in pools_served(memberships)


class RoundRobin:
    """Remembers, per pool, who got its last conversation, so the next one goes to the following
    operator."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def turn_order(self, operator_ids: Sequence[int], pool: str = DEFAULT_POOL) -> list[int]:
        ordered = sorted(operator_ids)
        last = self.last.get(pool)
        if last is None:
            return ordered
        after = [operator_id for operator_id in ordered if operator_id > last]
        return after + [operator_id for operator_id in ordered if operator_id <= last]

    def took(self, pool: str, operator_id: int) -> None:
        self.last[pool] = operator_id


def choose_operator(
    robin: RoundRobin,
    pool: str | None,
    free_slots: Mapping[int, int],
    memberships: Mapping[int, Collection[str]],
) -> int | None:
    """The operator whose turn it is among those with a free slot who serve ``pool``; None when nobody
    of the pool can take it (the conversation waits)."""
    candidates = [
        operator_id
        for operator_id, free in free_slots.items()
        if free > 0 and serves(memberships.get(operator_id, ()), pool)
    ]
    if not candidates:
        return None
    return robin.turn_order(candidates, pool_of(pool))[0]


async def assign_waiting(
    session: AsyncSession,
    robin: RoundRobin,
    now: datetime,
    *,
    limit: int,
    grace: timedelta,
    idle: timedelta,
    conversation_ids: Sequence[int] | None = None,
    diverted: Collection[str] = (),
    callcentre_pool: str | None = None,
) -> list[Assignment]:
    """Hands waiting conversations nobody holds (all, or those among ``conversation_ids``) to the online
    operators of their pool present at the desk (their desk seen within ``grace``, a session idle at
    most ``idle``) with free slots, oldest first; those of the ``diverted`` services to the operators of
    ``callcentre_pool`` instead of their own pool's. The caller frames the transaction and publishes after
    committing."""
    if conversation_ids is not None and not conversation_ids:
        return []
    # a sweep locks nobody when nothing waits; conversations just noted wait, most likely
    if conversation_ids is None and not await unassigned_waiting(session, 1):
        return []
    capacity = await lock_online_operators(session, now, grace, idle)
    load = await open_counts(session, list(capacity))
    free_slots = {
        operator_id: capacity[operator_id] - load[operator_id]
        for operator_id in capacity
        if load[operator_id] < capacity[operator_id]
    }
    if not free_slots:
        return []
    memberships = await operator_pools(session, list(free_slots))
    pools = frozenset().union(*(pools_served(memberships.get(op, ())) for op in free_slots))
    waiting = await unassigned_waiting(
        session,
        limit,
        conversation_ids,
        pools=pools,
        default_pool=DEFAULT_POOL,
        diverted=diverted,
        diversion_pool=callcentre_pool,
    )
    assignments: list[Assignment] = []
    for conversation_id, pool in waiting:
        operator_id = choose_operator(robin, pool, free_slots, memberships)
        if operator_id is None:  # nobody of its pool has room: it waits
            continue
        if not await take_conversation(session, conversation_id, operator_id):  # another process took it
            continue
        robin.took(pool_of(pool), operator_id)
        free_slots[operator_id] -= 1
        assignments.append(Assignment(conversation_id, operator_id, None, now))
    return assignments


async def give_back(session: AsyncSession, operator_id: int, now: datetime) -> list[Assignment]:
    """Gives back every conversation ``operator_id`` holds that is not closed: nobody would answer it."""
    return [
        Assignment(conversation_id, None, operator_id, now)
        for conversation_id in await release_held(session, operator_id)
    ]


async def withdraw_clients(
    session: AsyncSession, subscriber_ids: Collection[int], now: datetime
) -> list[Assignment]:
    """Takes the open conversations of clients just banned from their operators (they leave the desks;
    assignment skips them while the ban lasts). The caller commits, then :func:`publish_assignments`."""
    return [
        Assignment(conversation_id, None, operator_id, now)
        for conversation_id, operator_id in await release_clients(session, subscriber_ids)
    ]


async def publish_assignments(bus: EventBus | None, assignments: Sequence[Assignment]) -> None:
    """Publishes ``<prefix>/conversation/<id>/assigned`` for each change of hands (after the commit)."""
    if bus is None:
        return
    for assignment in assignments:
        await bus.publish(
            bus.topics.conversation_assigned(assignment.conversation_id), assignment.event_payload()
        )


async def announce_account_change(bus: EventBus | None, account_id: int) -> None:
    """Tells every panel that ``account_id`` was signed out, locked or left (after the commit): the
    payload carries the id only, whoever hears it reads the rest from the database."""
    if bus is not None:
        await bus.publish(bus.topics.account_changed(account_id), {"account_id": account_id})


class ReassignRefused(Exception):
    """A reassignment that cannot be done: ``reason`` is ``"unavailable"`` (the operator is not online
    at the desk) or ``"no_room"`` (they would go over their limit; ``room`` says how many they can
    still take)."""

    def __init__(self, reason: str, room: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.room = room


class AssignmentService:
    """Assigns: on each MO event, when an operator comes online or frees a slot, and in a periodic
    sweep; makes operators who left the desk give back what they hold (on their account's event and in
    the sweep); publishes ``<prefix>/conversation/<id>/assigned`` after each commit. The daemon runs
    one (:meth:`run_loop`); each panel uses one for its operators' actions."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus | None,
        policy: AssignmentPolicy,
        *,
        readers: async_sessionmaker[AsyncSession] | None = None,
        diversion: DiversionCache | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        #: Read-only sessions (``read_session_factory``): the looks that decide whether there is
        #: anything to write take no write lock (SQLite) while nobody is at the desk.
        self.readers = readers or sessionmaker
        self.bus = bus
        self.policy = policy
        self.robin = RoundRobin()
        #: The services diverted to the call centre, as this process last read them.
        self.diversion = diversion or DiversionCache()
        self._pending: set[int] = set()
        self._wakeup = asyncio.Event()
        #: Whether the last look found nobody online at the desk (it spaces the loop's passes).
        self._nobody_online = False

    async def assign(self, conversation_ids: Sequence[int] | None = None) -> list[Assignment]:
        now = utcnow()
        async with self.readers() as session:
            online = await anyone_online(session, now, self.policy.presence_grace, self.policy.session_idle)
            self._nobody_online = not online
            # Noted conversations are mostly ongoing chats someone already holds (or one another
            # process has just handed out): nothing to write for those either.
            waiting = online and (
                conversation_ids is None or bool(await unassigned_waiting(session, 1, conversation_ids))
            )
        if not waiting:  # nobody to hand anything to, or nothing to hand: no write transaction
            return []
        async with self.sessionmaker() as session, session.begin():
            done = await assign_waiting(
                session,
                self.robin,
                now,
                limit=self.policy.batch,
                grace=self.policy.presence_grace,
                idle=self.policy.session_idle,
                conversation_ids=conversation_ids,
                diverted=self.diversion.services,
                callcentre_pool=self.policy.callcentre_pool,
            )
        await self.publish(done)
        return done

    async def withdraw_barred(self) -> list[Assignment]:
        """Takes from their operators the conversations of clients banned or opted out since they were
        handed out (a BAJA, a ban from another process): a read first, a write only when there are
        any. Returns the changes of hands."""
        async with self.readers() as session:
            held = await barred_held(session, self.policy.batch)
        if not held:
            return []
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            released = await release_conversations(session, held)
        done = [
            Assignment(conversation_id, None, operator_id, now) for conversation_id, operator_id in released
        ]
        if done:
            logger.info("assignment.withdrawn_barred released=%d", len(done))
        await self.publish(done)
        return done

    async def change_presence(
        self, account_id: int, presence: Presence, *, audit: AuditEntry | None = None
    ) -> list[Assignment]:
        """Sets the operator's presence from their desk (which is live, then); offline gives back what
        they hold, online takes what waits. Returns the changes of hands. ``audit``: recorded with the
        change (its details set to the presence before and after), when the presence changed."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            before = await set_presence(session, account_id, presence)
            if audit is not None and before is not None and before is not presence:
                details = {"before": before.value, "after": presence.value}
                await append_audit(session, replace(audit, details=details), now=now)
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
        idle = self.policy.session_idle
        async with self.readers() as session:
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

    async def close(self, conversation_id: int, operator_id: int, *, audit: AuditEntry | None = None) -> bool:
        """Closes a conversation its operator holds, then fills the freed slot. ``audit``: recorded
        with the close, when it closed."""
        async with self.sessionmaker() as session, session.begin():
            closed = await close_held(session, conversation_id, operator_id, utcnow())
            if closed and audit is not None:
                await append_audit(session, audit)
        if closed:
            await self.assign()
        return closed

    async def reassign(
        self,
        conversation_ids: Collection[int],
        operator_id: int | None,
        *,
        audit: AuditEntry | None = None,
    ) -> list[Assignment]:
        """Hands live conversations to ``operator_id`` -- who must be online at the desk with room for
        all of them, or :class:`ReassignRefused` -- or, with None, takes them back to the queue (the
        next pass hands them out again). A closed conversation, one already where it is asked to go, and
        (to an operator) a banned or opted-out client's are left alone. ``audit``: one record per
        conversation moved (subject ``conversation:<id>``, details the operator before and after), in
        the same transaction. Returns the changes of hands, published after the commit."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            if operator_id is not None:
                capacity = await lock_online_operators(
                    session, now, self.policy.presence_grace, self.policy.session_idle
                )
                if operator_id not in capacity:
                    raise ReassignRefused("unavailable")
            holders = await lock_holders(session, conversation_ids, assignable=operator_id is not None)
            moving = {cid: holder for cid, holder in holders.items() if holder != operator_id}
            if operator_id is not None and moving:
                room = capacity[operator_id] - (await open_counts(session, [operator_id]))[operator_id]
                if len(moving) > room:
                    raise ReassignRefused("no_room", max(room, 0))
            done: list[Assignment] = []
            for conversation_id, holder in moving.items():
                if not await move_conversation(session, conversation_id, holder, operator_id):
                    continue
                done.append(Assignment(conversation_id, operator_id, holder, now))
                if audit is not None:
                    record = replace(
                        audit,
                        subject=f"conversation:{conversation_id}",
                        details={"before": {"operator_id": holder}, "after": {"operator_id": operator_id}},
                    )
                    await append_audit(session, record, now=now)
        await self.publish(done)
        return done

    async def on_mo_event(self, event: Event) -> None:
        conversation_id = _event_id(event, "conversation_id")
        if conversation_id is not None:
            await self.assign([conversation_id])

    async def refresh_diversion(self) -> None:
        """Reads the diversion switches again (after a switch, and at every sweep)."""
        async with self.readers() as session:
            await self.diversion.refresh(session)

    async def on_diversion_event(self, event: Event) -> None:
        """A service was switched: read the switches again if this process has not yet, then hand out
        what waits (a diverted service's waiting conversations may now go to the call centre)."""
        version = _event_id(event, "version")
        if version is None or self.diversion.is_stale(version):
            await self.refresh_diversion()
            await self.assign()

    async def diversion_loop(self) -> None:
        """The daemon's ear for diversion switches made in a panel. Runs until cancelled."""
        if self.bus is None:
            return
        async with self.bus.subscribe(self.bus.topics.all_service_diversions()) as switched:
            async for event in switched:
                try:
                    await self.on_diversion_event(event)
                except Exception:  # the sweep reads the switches again
                    logger.exception("diversion refresh failed")

    async def on_account_event(self, event: Event) -> None:
        account_id = _event_id(event, "account_id")
        if account_id is not None:
            await self.settle_presence([account_id])

    async def publish(self, assignments: Sequence[Assignment]) -> None:
        await publish_assignments(self.bus, assignments)

    async def sweep(self) -> None:
        """One periodic pass over who left the desk and everything waiting; a failure is logged, the
        next pass tries again."""
        try:
            await self.refresh_diversion()
            await self.settle_presence()
            await self.withdraw_barred()
            await self.assign()
        except Exception:  # a database hiccup must not end the sweeping
            logger.exception("assignment sweep failed")

    # --- the daemon's loop ---------------------------------------------------------------------------

    def note_waiting(self, conversation_id: int) -> None:
        """An MO was committed in this process for ``conversation_id``: :meth:`run_loop` hands it out
        (with the others noted meanwhile, in one transaction)."""
        self._pending.add(conversation_id)
        self._wakeup.set()

    async def run_loop(self) -> None:
        """The daemon's assignment: a sweep at start (what waited while nobody assigned), then the
        conversations noted by :meth:`note_waiting`, together at most every ``note_interval`` (every
        ``absence_recheck`` while nobody is online), and a sweep every ``sweep_interval``. Runs until
        cancelled."""
        await self.sweep()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.policy.sweep_interval
        next_pass = loop.time()
        while True:
            # Checked before waiting: under steady traffic the wake-up is always set again while a pass
            # runs, and a wait that returns at once never times out, so the sweep would never come.
            now = loop.time()
            if now >= next_sweep:
                await self.sweep()
                next_sweep = loop.time() + self.policy.sweep_interval
                continue
            if self._pending and now >= next_pass:
                await self._assign_noted()
                spacing = self.policy.absence_recheck if self._nobody_online else self.policy.note_interval
                next_pass = loop.time() + spacing
                continue
            wake_at = min(next_sweep, next_pass) if self._pending else next_sweep
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wakeup.wait()

    async def _assign_noted(self) -> None:
        pending, self._pending = sorted(self._pending), set()
        try:
            batch = self.policy.batch
            for start in range(0, len(pending), batch):  # a pass hands out at most ``batch``
                await self.assign(pending[start : start + batch])
        except Exception:  # the sweep hands them out later
            logger.exception("assignment of new conversations failed")


def _event_id(event: Event, key: str) -> int | None:
    value = event.payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
