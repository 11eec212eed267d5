"""Bind ownership among several daemons (issue 15, migration 0020): who is alive (``daemons``, one
row per instance with its heartbeat and the status ``gatewayd status`` prints) and which daemon owns
each configured bind slot (``bind_leases``, one row per slot while someone owns it).

A lease table rather than PostgreSQL advisory locks: with a lease the owner can fence itself by its
own clock when it cannot reach the database (it knows when it last renewed, so it knows when its
lease may have expired), whereas an advisory lock is released, or kept, by the server's view of one
TCP connection, which in a network split can hand the lock to another daemon while the cut-off one
still believes it holds it and keeps its binds open.

Expiry is computed by the database's clock on PostgreSQL (``now()``, the transaction's start), so
the clocks of the hosts never matter; on SQLite (embedded: one daemon on one host) by this process's
clock, through the very same table. The statements differ per dialect only by that clock and the
``INSERT .. ON CONFLICT`` construct: chosen once, with the store (:class:`gatewayd.store.store.Store`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Interval,
    String,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store._tables import table_of
from gatewayd.store.base import Base, UTCDateTime


class DaemonRecord(Base):
    """One daemon instance as it last said: its heartbeat, whether it is stopping, and its status
    (binds owned and up, lags) as a JSON object."""

    __tablename__ = "daemons"

    instance: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopping: Mapped[bool] = mapped_column(default=False)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BindLease(Base):
    """The owner of one bind slot (``gatewayd.binds.bind_slots`` names them) until ``expires_at``;
    ``generation`` grows by one at each change of owner."""

    __tablename__ = "bind_leases"

    slot: Mapped[str] = mapped_column(String(80), primary_key=True)
    carrier: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    generation: Mapped[int] = mapped_column(BigInteger, default=1)


DAEMONS = table_of(DaemonRecord)
LEASES = table_of(BindLease)


@dataclass(frozen=True, slots=True)
class Member:
    """What a daemon writes about itself at each heartbeat."""

    instance: str
    host: str
    pid: int
    version: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class DaemonSeen:
    instance: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopping: bool
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaseSeen:
    slot: str
    carrier: str
    owner: str
    acquired_at: datetime
    expires_at: datetime
    generation: int


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Every daemon row and every lease, with the database's time when they were read."""

    now: datetime
    daemons: tuple[DaemonSeen, ...]
    leases: tuple[LeaseSeen, ...]

    def live(self, lease: float) -> tuple[DaemonSeen, ...]:
        """Daemons that beat within ``lease`` seconds and are not stopping."""
        since = self.now - timedelta(seconds=lease)
        return tuple(d for d in self.daemons if not d.stopping and d.heartbeat_at > since)

    def held(self) -> dict[str, LeaseSeen]:
        """The leases not expired, by slot."""
        return {lease.slot: lease for lease in self.leases if lease.expires_at > self.now}


class ClusterStatements(ABC):
    """The statements of the ownership service (:mod:`gatewayd.cluster`) and of ``gatewayd status``.
    The caller frames the transaction."""

    #: Whether a daemon that cannot renew in time drops its binds: on PostgreSQL, where other daemons
    #: may take the slots. SQLite is one daemon on one host, whose writers may queue behind each other
    #: for seconds: there is nobody to fence against.
    fences: bool = True

    @abstractmethod
    def now(self) -> ColumnElement[datetime]:
        """The clock leases are computed by."""

    @abstractmethod
    def after(self, seconds: float) -> ColumnElement[datetime]:
        """That clock plus ``seconds``."""

    @abstractmethod
    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT with ``on_conflict_do_update``."""

    async def lock_instance(self, session: AsyncSession, instance: str) -> None:
        """Holds the row of ``instance`` until the transaction ends (written first, as stopping, when
        there is none): a daemon joining under the same name at the same moment waits for this
        transaction, then sees the row it wrote."""
        now = self.now()
        await session.execute(
            self._insert(DAEMONS)
            .values(
                instance=instance,
                host="",
                pid=0,
                version="",
                started_at=now,
                heartbeat_at=now,
                stopping=True,
                status={},
            )
            .on_conflict_do_nothing(index_elements=[DAEMONS.c.instance])
        )
        held = select(DAEMONS.c.instance).where(DAEMONS.c.instance == instance).with_for_update()
        await session.execute(held)

    async def write_member(self, session: AsyncSession, member: Member, status: dict[str, Any]) -> None:
        """``member``'s row written: alive now, not stopping, with ``status``."""
        row = {
            "instance": member.instance,
            "host": member.host,
            "pid": member.pid,
            "version": member.version,
            "started_at": member.started_at,
            "heartbeat_at": self.now(),
            "stopping": False,
            "status": status,
        }
        statement = self._insert(DAEMONS).values(**row)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[DAEMONS.c.instance],
                set_={key: statement.excluded[key] for key in row if key != "instance"},
            )
        )

    async def forget_gone(self, session: AsyncSession, silent_for: float) -> int:
        """Deletes the rows of daemons silent for ``silent_for`` seconds that hold no lease (renamed or
        retired instances, which ``gatewayd status`` would list as gone for ever); how many."""
        holds = select(LEASES.c.slot).where(LEASES.c.owner == DAEMONS.c.instance).exists()
        result = await session.execute(
            delete(DAEMONS).where(DAEMONS.c.heartbeat_at < self.after(-silent_for), ~holds)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def beat(
        self, session: AsyncSession, member: Member, status: dict[str, Any], *, lease: float
    ) -> dict[str, int]:
        """The heartbeat: ``member``'s row written (:meth:`write_member`) and every lease it holds
        renewed to ``lease`` seconds from now, in one statement. Returns the slots it holds
        (slot -> generation): a slot it had and is not among them was taken or given up."""
        await self.write_member(session, member, status)
        renewed = await session.execute(
            update(LEASES)
            .where(LEASES.c.owner == member.instance)
            .values(expires_at=self.after(lease))
            .returning(LEASES.c.slot, LEASES.c.generation)
        )
        return {slot: generation for slot, generation in renewed.all()}

    async def view(self, session: AsyncSession) -> ClusterView:
        now = (await session.execute(select(self.now()))).scalar_one()
        daemons = await session.execute(select(DaemonRecord).order_by(DaemonRecord.instance))
        leases = await session.execute(select(BindLease).order_by(BindLease.slot))
        return ClusterView(
            now=now,
            daemons=tuple(
                DaemonSeen(
                    d.instance,
                    d.host,
                    d.pid,
                    d.version,
                    d.started_at,
                    d.heartbeat_at,
                    d.stopping,
                    dict(d.status or {}),
                )
                for d in daemons.scalars()
            ),
            leases=tuple(
                LeaseSeen(x.slot, x.carrier, x.owner, x.acquired_at, x.expires_at, x.generation)
                for x in leases.scalars()
            ),
        )

    async def acquire(
        self, session: AsyncSession, owner: str, slots: Sequence[tuple[str, str]], *, lease: float
    ) -> list[str]:
        """Takes each (slot, carrier) nobody holds or whose lease expired; returns the slots won.
        A slot whose lease is still running stays its owner's (the conflict's WHERE)."""
        if not slots:
            return []
        now, expires = self.now(), self.after(lease)
        won: list[str] = []
        for slot, carrier in slots:
            statement = self._insert(LEASES).values(
                slot=slot, carrier=carrier, owner=owner, acquired_at=now, expires_at=expires, generation=1
            )
            result = await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[LEASES.c.slot],
                    set_={
                        "carrier": statement.excluded.carrier,
                        "owner": statement.excluded.owner,
                        "acquired_at": statement.excluded.acquired_at,
                        "expires_at": statement.excluded.expires_at,
                        "generation": LEASES.c.generation + 1,
                    },
                    where=LEASES.c.expires_at < now,
                ).returning(LEASES.c.slot)
            )
            won.extend(result.scalars())
        return won

    async def release(self, session: AsyncSession, owner: str, slots: Sequence[str]) -> None:
        """Gives up ``owner``'s leases of ``slots`` (its binds are already unbound)."""
        if slots:
            await session.execute(delete(LEASES).where(LEASES.c.owner == owner, LEASES.c.slot.in_(slots)))

    async def leave(self, session: AsyncSession, owner: str) -> None:
        """A daemon stopping: every lease it holds given up (its binds are unbound), its row marked."""
        await session.execute(delete(LEASES).where(LEASES.c.owner == owner))
        await session.execute(
            update(DAEMONS).where(DAEMONS.c.instance == owner).values(stopping=True, heartbeat_at=self.now())
        )


class PostgreSQLClusterStatements(ClusterStatements):
    def now(self) -> ColumnElement[datetime]:
        return func.now(type_=UTCDateTime())

    def after(self, seconds: float) -> ColumnElement[datetime]:
        return func.now(type_=UTCDateTime()) + literal(timedelta(seconds=seconds), Interval())

    def _insert(self, table: Any) -> Any:
        return postgresql.insert(table)


class SQLiteClusterStatements(ClusterStatements):
    fences = False

    def now(self) -> ColumnElement[datetime]:
        return literal(datetime.now(UTC), UTCDateTime())

    def after(self, seconds: float) -> ColumnElement[datetime]:
        return literal(datetime.now(UTC) + timedelta(seconds=seconds), UTCDateTime())

    def _insert(self, table: Any) -> Any:
        return sqlite.insert(table)
