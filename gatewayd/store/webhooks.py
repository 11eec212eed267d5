"""Webhooks (issue 14): the subscriptions admins make, and the durable queue of their deliveries.

A delivery row is written in the transaction that stores its event (``gatewayd.webhooks.enqueue``) and
posted by the delivery worker (``gatewayd.webhooks.delivery``). Its id is the delivery id the receiver
gets; ``ordering_key`` (the client ID) keeps one client's deliveries to one subscription in order: only
the oldest pending one of a (subscription, ordering key) is ever due. No foreign key: deleting a
subscription deletes its deliveries in the same statement set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Integer, Select, String, Text, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store._tables import table_of
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
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    #: The event names it wants, comma-separated, sorted.
    events: Mapped[str] = mapped_column(String(200))
    #: The HMAC key of its signatures (hex): kept in clear because the worker signs with it.
    secret: Mapped[str] = mapped_column(String(128))
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
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    subscription_id: Mapped[int] = mapped_column()
    event: Mapped[str] = mapped_column(String(32))
    ordering_key: Mapped[str] = mapped_column(String(64))
    #: The JSON body posted, exactly as signed.
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    #: When it is due; while a worker posts it, the end of that worker's lease.
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH), default=None)
    created_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


DELIVERIES = table_of(WebhookDelivery)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    subscription_id: int
    event: str
    payload: str
    attempts: int
    created_at: datetime


class DeliveryClaims(ABC):
    """Leases due deliveries to one worker: per (subscription, ordering key) only the oldest pending
    delivery is ever due, and a leased one (``next_attempt_at`` moved to the lease's end) stays the
    oldest pending until its outcome is recorded, so one client's deliveries go one at a time, in order."""

    async def claim(
        self, session: AsyncSession, free: Mapping[int, int], limit: int, now: datetime, lease_until: datetime
    ) -> list[ClaimedDelivery]:
        """At most ``limit`` due deliveries, at most ``free[s]`` of subscription ``s`` (only those), oldest
        first, leased until ``lease_until``."""
        if not free or limit < 1:
            return []
        position = (
            func.row_number()
            .over(
                partition_by=(DELIVERIES.c.subscription_id, DELIVERIES.c.ordering_key),
                order_by=DELIVERIES.c.id,
            )
            .label("position")
        )
        queue = (
            select(DELIVERIES.c.id, DELIVERIES.c.subscription_id, DELIVERIES.c.next_attempt_at, position)
            .where(DELIVERIES.c.state == DeliveryState.PENDING, DELIVERIES.c.subscription_id.in_(list(free)))
            .subquery()
        )
        heads = await session.execute(
            select(queue.c.id, queue.c.subscription_id)
            .where(queue.c.position == 1, queue.c.next_attempt_at <= now)
            .order_by(queue.c.id)
        )
        taken: Counter[int] = Counter()
        chosen: list[int] = []
        for delivery_id, subscription_id in heads:
            if taken[subscription_id] < free[subscription_id]:
                taken[subscription_id] += 1
                chosen.append(delivery_id)
                if len(chosen) == limit:
                    break
        if not chosen:
            return []
        due = (
            DELIVERIES.c.id.in_(chosen),
            DELIVERIES.c.state == DeliveryState.PENDING,
            DELIVERIES.c.next_attempt_at <= now,
        )
        result = await session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(self._lockable(select(DELIVERIES.c.id).where(*due))))
            .values(next_attempt_at=lease_until)
            .returning(
                DELIVERIES.c.id,
                DELIVERIES.c.subscription_id,
                DELIVERIES.c.event,
                DELIVERIES.c.payload,
                DELIVERIES.c.attempts,
                DELIVERIES.c.created_at,
            )
        )
        return sorted((ClaimedDelivery(*row) for row in result), key=lambda delivery: delivery.id)

    @abstractmethod
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        """The due rows' ids as this database lets concurrent workers share them."""


class SQLiteDeliveryClaims(DeliveryClaims):
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        return due  # a single writer: the update's own check is enough


class PostgreSQLDeliveryClaims(DeliveryClaims):
    def _lockable(self, due: Select[tuple[int]]) -> Select[tuple[int]]:
        # another daemon's claim holds its rows until it commits: skip them rather than queue behind it
        return due.with_for_update(skip_locked=True)


async def record_delivered(session: AsyncSession, delivered: Sequence[tuple[int, int, datetime]]) -> None:
    """(delivery id, the 2xx status, when) each: delivered, in one batch of statements."""
    if not delivered:
        return
    await session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == bindparam("delivery_id"))
        .values(
            state=DeliveryState.DELIVERED.value,
            attempts=DELIVERIES.c.attempts + 1,
            last_status=bindparam("status"),
            last_error=None,
            delivered_at=bindparam("at"),
        ),
        [{"delivery_id": delivery_id, "status": status, "at": at} for delivery_id, status, at in delivered],
    )


async def record_failed(
    session: AsyncSession, delivery_id: int, status: int | None, error: str, *, retry_at: datetime | None
) -> None:
    """One more failed try: due again at ``retry_at``, or dead when None."""
    values: dict[str, object] = {
        "attempts": DELIVERIES.c.attempts + 1,
        "last_status": status,
        "last_error": error[:ERROR_LENGTH],
    }
    if retry_at is None:
        values["state"] = DeliveryState.DEAD.value
    else:
        values["next_attempt_at"] = retry_at
    await session.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(values))
