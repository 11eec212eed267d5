"""Bind ownership among the daemons sharing one database: every configured bind slot (carrier x
bind x count) has exactly one owner among the live daemons at a time.

Through a lease table (``bind_leases``, :mod:`gatewayd.store.cluster`), not advisory locks: with a
lease the owner can fence itself by its own clock when it cannot reach the database, whereas an
advisory lock is released (or kept) by the server's view of one TCP connection, which in a network
split can hand the lock to another daemon while the cut-off one still believes it holds it.

One task, :meth:`Ownership.cluster_loop`, beats every ``[cluster] heartbeat`` seconds (and at once
when another daemon announces a change on the bus, ``<prefix>/cluster/changed``): it writes this
daemon's row, renews its leases to ``lease`` seconds by the database's clock, reads the live daemons
and the leases, and moves towards this daemon's fair share (:mod:`gatewayd.fair_share`): slots over
the share are unbound FIRST and their leases deleted after, so the binds open never exceed those
configured, even for a moment; free or expired slots are then taken (an ``INSERT .. ON CONFLICT``
that only overwrites an expired lease) and their binds started.

Self-fencing: the time ``t0`` is noted before each renewal is sent; once it succeeds the lease runs
until at least ``t0 + lease`` in real time (the database computed it later than ``t0``), so the
daemon unbinds everything it owns at ``t0 + lease - margin`` by its own monotonic clock if no
renewal has succeeded since: a daemon cut off from the database (or hung in it) has closed its
binds before any other daemon can take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from gatewayd.binds import BindSupervisor
from gatewayd.bus import EventBus
from gatewayd.config import ClusterConfig
from gatewayd.fair_share import plan
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.metrics import GatewayMetrics
from gatewayd.store.cluster import ClusterView, DaemonSeen, Member
from gatewayd.store.store import Store

log = logging.getLogger("gatewayd.cluster")

#: A daemon row silent this long (seconds) and holding no lease is deleted when a daemon joins: a week
#: of "gone" in ``gatewayd status`` covers a NOC's look back at an incident, not every retired name.
FORGET_GONE_AFTER = 7 * 24 * 3600.0


class InstanceTaken(RuntimeError):
    """Another live daemon runs under this daemon's ``[daemon] instance``."""


def version() -> str:
    """This release's version (the installed distribution's)."""
    try:
        return metadata.version("echat-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def this_member(instance: str) -> Member:
    return Member(instance, socket.gethostname(), os.getpid(), version(), datetime.now(UTC))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def conflicting(member: Member, seen: DaemonSeen) -> bool:
    """Whether ``seen`` (a live row under ``member``'s instance) is another daemon still running: one
    on another host, or another process on this host that still exists (a daemon killed and started
    again at once takes its own row over)."""
    if seen.host != member.host:
        return True
    return seen.pid != member.pid and _pid_alive(seen.pid)


@dataclass(frozen=True, slots=True)
class Timings:
    lease: float
    heartbeat: float
    margin: float

    @classmethod
    def from_config(cls, config: ClusterConfig) -> Timings:
        return cls(config.lease, config.heartbeat, config.margin)


class Ownership:
    """The ownership service of one daemon: joins, beats, rebalances, fences, leaves."""

    def __init__(
        self,
        store: Store,
        binds: BindSupervisor,
        member: Member,
        timings: Timings,
        *,
        metrics: GatewayMetrics,
        bus: EventBus | None = None,
        status: Callable[[], dict[str, Any]] = dict,
        health: LoopHealth | None = None,
    ) -> None:
        self._store = store
        self._binds = binds
        self.member = member
        self.timings = timings
        self._metrics = metrics
        self._bus = bus
        self._status = status
        self._health = health or LoopHealth()
        self._wake = asyncio.Event()
        #: Shutdown began: no more slots taken; the leases still owned are renewed (and fenced) until
        #: :meth:`leave`, as their binds may take a response timeout and an unbind to close.
        self._closing = False
        #: :meth:`leave` began: the binds are closed, the loop ends.
        self._leaving = False
        #: The monotonic time by which a renewal must succeed, or every owned bind is dropped.
        self._deadline: float | None = None
        self._last_renewal: float | None = None
        self._beat_task: asyncio.Task[None] | None = None
        #: Slots over the share being unbound, their leases (still renewed) deleted once closed; the
        #: beats go on meanwhile, as an unbind may wait a response timeout for the submissions in flight.
        self._giving_up: set[str] = set()
        self._give_ups: set[asyncio.Task[None]] = set()
        #: The last view of the cluster (``gatewayd status`` reads the database itself).
        self.view: ClusterView | None = None
        metrics.cluster_heartbeat_age.set_function(self._heartbeat_age)

    # --- start and stop ------------------------------------------------------------------------------

    async def join(self) -> None:
        """Before anything binds: takes this instance's name, or refuses (:class:`InstanceTaken`) when
        another live daemon runs under it. Checked and written in one transaction that holds the row,
        so of two daemons started together under one name the second sees the first."""
        cluster = self._store.cluster
        async with self._store.transaction() as session:
            await cluster.lock_instance(session, self.member.instance)
            view = await cluster.view(session)
            for seen in view.live(self.timings.lease):
                if seen.instance == self.member.instance and conflicting(self.member, seen):
                    raise InstanceTaken(
                        f"instance {seen.instance!r} is already running (host {seen.host}, pid {seen.pid}, "
                        f"last heartbeat {(view.now - seen.heartbeat_at).total_seconds():.1f} s ago): give "
                        "this daemon another [daemon] instance (or GATEWAYD_DAEMON_INSTANCE)"
                    )
            await cluster.write_member(session, self.member, self._status())
            await cluster.forget_gone(session, FORGET_GONE_AFTER)

    def close(self) -> None:
        """Shutdown began: take no more slots (those owned are unbound with the binds)."""
        self._closing = True
        self._wake.set()

    async def leave(self) -> None:
        """After the binds are unbound: give up every lease, mark this daemon stopping, and tell the
        others to take the slots now."""
        self.close()
        self._leaving = True
        tasks = (self._beat_task, *self._give_ups)
        waiting = {task for task in tasks if task is not None and not task.done()}
        if waiting:  # a beat may be taking slots, a give-up deleting leases
            await asyncio.wait(waiting, timeout=self.timings.lease)
        self._deadline = None
        try:
            async with asyncio.timeout(self.timings.lease):
                async with self._store.transaction() as session:
                    await self._store.cluster.leave(session, self.member.instance)
        except Exception as error:  # the leases expire on their own
            log_event(log, "cluster.leave_failed", logging.WARNING, error=repr(error))
            return
        for carrier in self._binds.owned_binds():
            self._metrics.bind_slots_owned.labels(carrier).set(0)
        await self._announce("left")
        log_event(log, "cluster.left", instance=self.member.instance)

    # --- the loop ------------------------------------------------------------------------------------

    def changed(self) -> None:
        """Another daemon announced a change: beat now."""
        self._wake.set()

    async def cluster_loop(self) -> None:
        """Beat until :meth:`leave`, never letting an owned bind outlive its lease: after :meth:`close`
        the leases are still renewed while the binds drain and unbind, without taking any more."""
        announced = False
        try:
            await self._beats(announced)
        finally:
            pending = {task for task in (self._beat_task, *self._give_ups) if task and not task.done()}
            for task in pending:
                task.cancel()
            if pending:  # none outlives the loop (a connection of the heartbeat's pool each)
                await asyncio.wait(pending)

    async def _beats(self, announced: bool) -> None:
        while not self._leaving:
            self._wake.clear()
            self._beat_task = asyncio.create_task(self._beat(), name="cluster.beat")
            await self._until(self._beat_task)
            error = self._beat_task.exception() if not self._beat_task.cancelled() else None
            if error is not None:
                self._health.failed("cluster.heartbeat", error)
                log_event(log, "cluster.heartbeat_failed", logging.WARNING, error=repr(error))
            else:
                self._health.succeeded("cluster.heartbeat")
                if not announced:  # the others rebalance now rather than at their next heartbeat
                    announced = True
                    await self._announce("joined")
            if not self._leaving:
                await self._until(self._wake, self.timings.heartbeat)

    async def _until(self, what: asyncio.Task[None] | asyncio.Event, within: float | None = None) -> None:
        """Waits for ``what`` (at most ``within`` seconds), fencing when the deadline passes first."""
        waiter = what if isinstance(what, asyncio.Task) else asyncio.ensure_future(what.wait())
        end = None if within is None else time.monotonic() + within
        try:
            while not waiter.done():
                now = time.monotonic()
                deadline = self._deadline if self._store.cluster.fences else None
                limits = [t - now for t in (end, deadline) if t is not None]
                timeout = max(0.0, min(limits)) if limits else None
                if end is not None and now >= end:
                    return
                if self._deadline is not None and now >= self._deadline and self._store.cluster.fences:
                    await self._fence()
                    continue
                await asyncio.wait({waiter}, timeout=timeout)
        finally:
            if waiter is not what:
                waiter.cancel()

    async def _fence(self) -> None:
        """No renewal succeeded in time: every owned bind is dropped at once, its slot taken as lost."""
        owned = sorted(self._binds.owned | self._giving_up)
        self._deadline = None
        if not owned:
            return
        log_event(
            log,
            "cluster.fenced",
            logging.ERROR,
            slots=",".join(owned),
            reason="no lease renewal succeeded in time: unbinding before the leases can expire",
        )
        self._metrics.bind_leases_lost.inc(len(owned))
        await self._binds.release(owned, grace=self.timings.margin / 2)
        self._publish_owned()

    async def _beat(self) -> None:
        cluster, member, timings = self._store.cluster, self.member, self.timings
        t0 = time.monotonic()
        async with self._store.transaction() as session:
            renewed = await cluster.beat(session, member, self._status(), lease=timings.lease)
            view = await cluster.view(session)
        self._renewed(t0)
        self.view = view
        owned = self._binds.owned
        lost = sorted(owned - set(renewed))
        if lost:  # taken while this daemon could not renew (it fenced), or deleted by hand
            log_event(log, "cluster.slots_lost", logging.WARNING, slots=",".join(lost))
            self._metrics.bind_leases_lost.inc(len(lost))
            await self._binds.release(lost, grace=timings.margin / 2)
        configured = {name: slot.carrier for name, slot in self._binds.slots.items()}
        held = {slot: lease.owner for slot, lease in view.held().items()}
        held.update(dict.fromkeys(renewed, member.instance))
        live = [d.instance for d in view.live(timings.lease)]
        self._metrics.cluster_daemons.set(len(set(live) | {member.instance}))
        moves = plan(member.instance, configured, live, held)
        release = [name for name in moves.release if name not in self._giving_up]
        if release:
            self._giving_up.update(release)
            task = asyncio.create_task(self._give_up(release), name="cluster.give_up")
            self._give_ups.add(task)
            task.add_done_callback(self._give_ups.discard)
        if not self._closing:
            started = [
                name
                for name in renewed
                if name in configured
                and name not in owned
                and name not in moves.release
                and name not in self._giving_up
            ]
            if moves.acquire:
                t1 = time.monotonic()
                wanted = [(name, configured[name]) for name in moves.acquire]
                async with self._store.transaction() as session:
                    won = await cluster.acquire(session, member.instance, wanted, lease=timings.lease)
                self._renewed(t1, keep_earlier=True)
                if won:
                    log_event(log, "cluster.acquired", slots=",".join(won))
                started += won
            if started and not self._renewal_current():
                # this beat took so long that its renewal may expire before a bind would be up (the
                # deadline passed): bind them at the next beat instead of binding and fencing at once
                log_event(log, "cluster.renewal_late", logging.WARNING, slots=",".join(started))
            else:
                self._binds.own(started)
        self._publish_owned()

    async def _give_up(self, slots: list[str]) -> None:
        """Unbind first, then delete the leases: the binds open never exceed those configured. The
        beats renew these leases until then (and fence them with the others)."""
        try:
            await self._binds.release(slots)
            async with self._store.transaction() as session:
                await self._store.cluster.release(session, self.member.instance, slots)
        except Exception as error:  # the next beat finds them over the share again
            names = ",".join(slots)
            log_event(log, "cluster.release_failed", logging.WARNING, slots=names, error=repr(error))
            return
        finally:
            self._giving_up.difference_update(slots)
        log_event(log, "cluster.released", slots=",".join(slots))
        await self._announce("released")

    def _renewal_current(self) -> bool:
        """Whether the last renewal leaves time to bind under it (always, where nobody fences)."""
        if not self._store.cluster.fences:
            return True
        return self._deadline is not None and time.monotonic() < self._deadline

    def _renewed(self, t0: float, *, keep_earlier: bool = False) -> None:
        deadline = t0 + self.timings.lease - self.timings.margin
        if keep_earlier and self._deadline is not None:
            deadline = min(deadline, self._deadline)
        self._deadline = deadline
        self._last_renewal = t0

    def _heartbeat_age(self) -> float:
        if self._last_renewal is None:
            return -1.0
        return time.monotonic() - self._last_renewal

    def _publish_owned(self) -> None:
        for carrier, count in self._binds.owned_binds().items():
            self._metrics.bind_slots_owned.labels(carrier).set(count)
        for carrier, count in self._binds.carrier_binds()[1].items():
            self._metrics.bind_slots_configured.labels(carrier).set(count)

    async def _announce(self, why: str) -> None:
        if self._bus is None:
            return
        with contextlib.suppress(Exception):  # the bus may be away: the others poll anyway
            await self._bus.publish(
                self._bus.topics.cluster_changed(), {"instance": self.member.instance, "event": why}
            )
