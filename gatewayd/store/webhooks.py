"""Webhooks (issue 14): the subscriptions admins make, and the durable queue of their deliveries.

A delivery row is written in the transaction that stores its event (``gatewayd.webhooks.enqueue``) and
posted by the delivery worker (``gatewayd.webhooks.delivery``). Its id is the delivery id the receiver
gets; ``ordering_key`` (the client ID) keeps one client's deliveries to one subscription in order: only
one delivery of a (subscription, ordering key) is ``pending`` (its head), the later ones ``waiting`` until
the head's outcome promotes the oldest of them in the same transaction, so a claim reads only heads. No
foreign key: deleting a
subscription deletes its deliveries in the same statement set.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from gatewayd.store._tables import IN_LIST_LIMIT, among, chunks, table_of
from gatewayd.store.base import Base

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
NAME_LENGTH = 64
URL_LENGTH = 2000
ERROR_LENGTH = 300


class WebhookEvent(StrEnum):
    MO_RECEIVED = "mo.received"
    MT_STATUS = "mt.status"
    MT_RECEIPT = "mt.receipt"
    CLIENT_OPT_OUT = "client.opt_out"
    CLIENT_OPT_IN = "client.opt_in"


class DeliveryState(StrEnum):
    #: The head of its client's queue: posted when due.
    PENDING = "pending"
    #: Behind its client's head: made pending when the head is delivered or dead.
    WAITING = "waiting"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    # 64-bit: a panel path admits any id of up to 18 digits (a 404, never an overflow)
    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    #: The event names it wants, comma-separated, sorted.
    events: Mapped[str] = mapped_column(String(200))
    #: The HMAC key of its signatures (hex): kept in clear because the worker signs with it.
    secret: Mapped[str] = mapped_column(String(128))
    #: The secret before the last rotation, also signed with until ``previous_secret_until``.
    previous_secret: Mapped[str | None] = mapped_column(String(128), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    include_msisdn: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()

    @property
    def event_set(self) -> frozenset[str]:
        return frozenset(name for name in self.events.split(",") if name)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_queue", "subscription_id", "ordering_key", "state", "id"),
        # the panel's newest deliveries of a subscription in a state
        Index("ix_webhook_deliveries_recent", "subscription_id", "state", "id"),
        # the purge of old delivered ones
        Index(
            "ix_webhook_deliveries_delivered_at",
            "delivered_at",
            postgresql_where=text("state = 'delivered'"),
            sqlite_where=text("state = 'delivered'"),
        ),
        # the heads only (one per client with something queued): a claim's cost does not grow with the
        # backlog behind them
        Index(
            "ix_webhook_deliveries_due",
            "subscription_id",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(32))
    ordering_key: Mapped[str] = mapped_column(String(64))
    #: The JSON body posted, exactly as signed.
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    #: When it is due; while a worker posts it, the end of that worker's lease.
    next_attempt_at: Mapped[datetime] = mapped_column()
    #: The token of the claim that leased it: an outcome is written only by the lease's holder.
    lease: Mapped[int | None] = mapped_column(default=None)
    last_status: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH), default=None)
    created_at: Mapped[datetime] = mapped_column()
    #: When an admin last queued it again (dead -> redelivered): its age for ``max_age`` counts from it.
    requeued_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


DELIVERIES = table_of(WebhookDelivery)
#: Bits of a lease token (fits the INTEGER column everywhere).
LEASE_BITS = 31

#: (subscription id, ordering key): one client's queue at one subscription.
QueueKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    subscription_id: int
    event: str
    payload: str
    attempts: int
    #: When it was queued (created, or last redelivered): its age counts from it.
    queued_at: datetime
    ordering_key: str
    #: The claim's token and the end of its lease.
    lease: int
    lease_until: datetime

    @property
    def key(self) -> QueueKey:
        return (self.subscription_id, self.ordering_key)


class DeliveryQueue(ABC):
    """The queue's writes that concurrent daemons must agree on. Per (subscription, ordering key) one
    delivery is the head (``pending``); a claim leases due heads (``next_attempt_at`` moved to the lease's
    end, a fresh ``lease`` token) and only the token's holder records the outcome, which promotes the
    next one of that client: one client's deliveries go one at a time, in order."""

    async def claim(
        self,
        session: AsyncSession,
        free: Mapping[int, int],
        now: datetime,
        lease_until: datetime,
        *,
        held: Collection[int] = (),
    ) -> list[ClaimedDelivery]:
        """Due heads, at most ``free[s]`` of subscription ``s`` (only those), those due longest first,
        leased until ``lease_until``; ``held``: ids this worker holds already (never claimed again)."""
        token = secrets.randbits(LEASE_BITS)
        claimed: list[ClaimedDelivery] = []
        for subscription_id, count in free.items():
            if count < 1:
                continue
            due = (
                select(DELIVERIES.c.id)
                .where(
                    DELIVERIES.c.subscription_id == subscription_id,
                    DELIVERIES.c.state == DeliveryState.PENDING,
                    DELIVERIES.c.next_attempt_at <= now,
                )
                .order_by(DELIVERIES.c.next_attempt_at)
                .limit(count)
            )
            if held:
                due = due.where(~among(DELIVERIES.c.id, list(held)))
            result = await session.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(self._lockable(due)))
                .values(next_attempt_at=lease_until, lease=token)
                .returning(
                    DELIVERIES.c.id,
                    DELIVERIES.c.subscription_id,
                    DELIVERIES.c.event,
                    DELIVERIES.c.payload,
                    DELIVERIES.c.attempts,
                    func.coalesce(DELIVERIES.c.requeued_at, DELIVERIES.c.created_at).label("queued_at"),
                    DELIVERIES.c.ordering_key,
                )
            )
            claimed.extend(
                ClaimedDelivery(
                    id=row.id,
                    subscription_id=row.subscription_id,
                    event=row.event,
                    payload=row.payload,
                    attempts=row.attempts,
                    queued_at=row.queued_at,
                    lease=token,
                    lease_until=lease_until,
                    ordering_key=row.ordering_key,
                )
                for row in result
            )
        return sorted(claimed, key=lambda delivery: delivery.id)

    @abstractmethod
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        """The due rows' ids as this database lets concurrent workers share them."""

    @abstractmethod
    async def lock_keys(self, session: AsyncSession, keys: Iterable[QueueKey]) -> None:
        """Holds these clients' queues until the transaction ends: whoever adds to a queue or finishes
        its head sees the other's committed rows (no queue left without a head, none with two)."""


class SQLiteDeliveryQueue(DeliveryQueue):
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        return due  # a single writer: the update's own check is enough

    async def lock_keys(self, session: AsyncSession, keys: Iterable[QueueKey]) -> None:
        return None  # a single writer


class PostgreSQLDeliveryQueue(DeliveryQueue):
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        # another daemon's claim holds its rows until it commits: skip them rather than queue behind it
        return due.with_for_update(skip_locked=True)

    async def lock_keys(self, session: AsyncSession, keys: Iterable[QueueKey]) -> None:
        # transaction-scoped advisory locks on a 64-bit hash of the queue, always taken in the same order
        # (no deadlock between two; a collision only makes two queues wait for each other)
        ordered = sorted(set(keys))
        if ordered:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:queue, 0))"),
                [{"queue": f"webhooks/{s}/{k}"} for s, k in ordered],
            )


async def promote_heads(session: AsyncSession, keys: Iterable[QueueKey], now: datetime) -> None:
    """Makes the oldest waiting delivery of each of these queues its head, due now, where it has none
    (call with the keys locked: :meth:`DeliveryQueue.lock_keys`)."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    waiting = DELIVERIES.alias("waiting")
    head = DELIVERIES.alias("head")
    same_queue: tuple[BindParameter[int], BindParameter[str]] = (
        bindparam("b_subscription", type_=Integer()),
        bindparam("b_client", type_=String()),
    )
    oldest = (
        select(func.min(waiting.c.id))
        .where(
            waiting.c.subscription_id == same_queue[0],
            waiting.c.ordering_key == same_queue[1],
            waiting.c.state == DeliveryState.WAITING,
        )
        .scalar_subquery()
    )
    has_head = exists().where(
        and_(
            head.c.subscription_id == same_queue[0],
            head.c.ordering_key == same_queue[1],
            head.c.state == DeliveryState.PENDING,
        )
    )
    await session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == oldest, ~has_head)
        .values(state=DeliveryState.PENDING.value, next_attempt_at=now, lease=None)
        .execution_options(synchronize_session=False),
        [{"b_subscription": s, "b_client": k} for s, k in ordered],
    )


async def headed(session: AsyncSession, keys: Iterable[QueueKey]) -> set[QueueKey]:
    """Those of ``keys`` whose queue has a head (call with the keys locked): a queue with waiting
    deliveries always has one, so the others are empty."""
    found: set[QueueKey] = set()
    for chunk in chunks(sorted(set(keys)), IN_LIST_LIMIT // 2):
        rows = await session.execute(
            select(DELIVERIES.c.subscription_id, DELIVERIES.c.ordering_key).where(
                tuple_(DELIVERIES.c.subscription_id, DELIVERIES.c.ordering_key).in_(chunk),
                DELIVERIES.c.state == DeliveryState.PENDING,
            )
        )
        found.update((subscription_id, ordering_key) for subscription_id, ordering_key in rows)
    return found


def _held(delivery: ClaimedDelivery) -> tuple[ColumnElement[bool], ...]:
    return (
        DELIVERIES.c.id == delivery.id,
        DELIVERIES.c.state == DeliveryState.PENDING,
        DELIVERIES.c.lease == delivery.lease,
    )


async def record_delivered(
    queue: DeliveryQueue,
    session: AsyncSession,
    delivered: Sequence[tuple[ClaimedDelivery, int, datetime]],
    now: datetime,
) -> None:
    """(delivery, the 2xx status, when) each: delivered, and its client's next one made due (only the
    deliveries still leased to their claim: one whose lease another worker took is that worker's)."""
    finished = [
        (
            delivery,
            {
                "state": DeliveryState.DELIVERED.value,
                "last_status": status,
                "last_error": None,
                "delivered_at": at,
            },
        )
        for delivery, status, at in delivered
    ]
    await _finish(queue, session, finished, now)


async def record_failed(
    queue: DeliveryQueue,
    session: AsyncSession,
    delivery: ClaimedDelivery,
    status: int | None,
    error: str,
    *,
    retry_at: datetime | None,
    now: datetime,
) -> None:
    """One more failed try: due again at ``retry_at``, or dead when None (its client's next made due)."""
    values: dict[str, object] = {"last_status": status, "last_error": error[:ERROR_LENGTH]}
    if retry_at is None:
        values["state"] = DeliveryState.DEAD.value
        await _finish(queue, session, [(delivery, values)], now)
        return
    values |= {"next_attempt_at": retry_at, "lease": None, "attempts": DELIVERIES.c.attempts + 1}
    await session.execute(update(DELIVERIES).where(*_held(delivery)).values(values))


async def _finish(
    queue: DeliveryQueue,
    session: AsyncSession,
    finished: Sequence[tuple[ClaimedDelivery, dict[str, object]]],
    now: datetime,
) -> None:
    """Ends these deliveries (one statement per kind of outcome) where their lease still holds, and makes
    the next one of each of their clients due."""
    if not finished:
        return
    await queue.lock_keys(session, (delivery.key for delivery, _ in finished))
    values = dict(finished[0][1])
    by_id = {delivery.id: outcome for delivery, outcome in finished}
    for name in ("last_status", "delivered_at"):
        if name in values and len(by_id) > 1:
            values[name] = case({i: outcome[name] for i, outcome in by_id.items()}, value=DELIVERIES.c.id)
    result = await session.execute(
        update(DELIVERIES)
        .where(
            tuple_(DELIVERIES.c.id, DELIVERIES.c.lease).in_([(d.id, d.lease) for d, _ in finished]),
            DELIVERIES.c.state == DeliveryState.PENDING,
        )
        .values({**values, "attempts": DELIVERIES.c.attempts + 1, "lease": None})
        .returning(DELIVERIES.c.subscription_id, DELIVERIES.c.ordering_key)
    )
    await promote_heads(session, [(subscription_id, key) for subscription_id, key in result], now)


async def purge_delivered(session: AsyncSession, before: datetime, batch: int) -> int:
    """Deletes at most ``batch`` deliveries delivered before ``before``; how many."""
    old = (
        select(DELIVERIES.c.id)
        .where(DELIVERIES.c.state == DeliveryState.DELIVERED, DELIVERIES.c.delivered_at < before)
        .limit(batch)
    )
    result = await session.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(old)))
    return int(getattr(result, "rowcount", 0) or 0)


async def release(session: AsyncSession, deliveries: Sequence[ClaimedDelivery], now: datetime) -> None:
    """Gives back leases that were never posted (shutdown, a subscription made inactive): due now."""
    for delivery in deliveries:
        await session.execute(
            update(DELIVERIES).where(*_held(delivery)).values(next_attempt_at=now, lease=None)
        )
