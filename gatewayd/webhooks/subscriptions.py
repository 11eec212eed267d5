"""The one place webhook subscriptions are made, changed and deleted (the panel and the API call it).

The caller frames the transaction and writes the audit record in it; after the commit it calls
:func:`announce_change` so that every daemon reads the active subscriptions again.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gatewayd.bus import EventBus
from gatewayd.net_safety import Refusal, UnsafeTarget, vetted_target
from gatewayd.store._tables import among
from gatewayd.store.webhooks import (
    NAME_LENGTH,
    DeliveryQueue,
    DeliveryState,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    promote_heads,
)

EVENTS = tuple(WebhookEvent)
#: How long after a rotation deliveries are signed with the old secret as well.
ROTATION_GRACE = timedelta(hours=24)


class Problem(StrEnum):
    """Why a subscription was refused (each caller words it for its users: panel, API)."""

    NAME = "name"  # empty or too long
    NAME_TAKEN = "name_taken"
    NO_EVENTS = "no_events"
    UNKNOWN_EVENT = "unknown_event"
    BAD_URL = Refusal.BAD_URL.value
    NO_HOST = Refusal.NO_HOST.value
    NOT_PUBLIC = Refusal.NOT_PUBLIC.value


class InvalidSubscription(ValueError):
    """What was given cannot make a subscription; ``problem`` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SubscriptionInput:
    name: str
    url: str
    events: Collection[str]
    include_msisdn: bool = False
    active: bool = True


def described(subscription: WebhookSubscription) -> dict[str, Any]:
    """What the audit trail keeps of a subscription (never its secret): the panel's and the API's."""
    return {
        "name": subscription.name,
        "url": subscription.url,
        "events": subscription.events,
        "include_msisdn": subscription.include_msisdn,
        "active": subscription.active,
    }


def new_secret() -> str:
    """32 random bytes, hex: the HMAC key, shown once."""
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class CheckedSubscription:
    """A subscription's fields once checked, its URL vetted (a DNS look-up): made by
    :func:`check_subscription` before the transaction, so no row lock waits on a DNS answer."""

    name: str
    url: str
    #: Comma-separated, sorted.
    events: str
    include_msisdn: bool
    active: bool


async def check_subscription(given: SubscriptionInput, allow: Collection[str] = ()) -> CheckedSubscription:
    """``given`` checked (name, events, the URL vetted), or InvalidSubscription; call it outside any
    transaction."""
    name = given.name.strip()
    if not name or len(name) > NAME_LENGTH:
        raise InvalidSubscription(Problem.NAME)
    events = sorted(set(given.events))
    if not events:
        raise InvalidSubscription(Problem.NO_EVENTS)
    if any(event not in EVENTS for event in events):
        raise InvalidSubscription(Problem.UNKNOWN_EVENT)
    url = given.url.strip()
    try:
        await vetted_target(url, allow)
    except UnsafeTarget as error:
        raise InvalidSubscription(Problem(error.refusal.value)) from error
    return CheckedSubscription(name, url, ",".join(events), given.include_msisdn, given.active)


async def _name_taken(session: AsyncSession, name: str, other_than: int | None) -> None:
    found = await session.scalar(select(WebhookSubscription.id).where(WebhookSubscription.name == name))
    if found is not None and found != other_than:
        raise InvalidSubscription(Problem.NAME_TAKEN)


async def _flushed(session: AsyncSession) -> None:
    """Writes the change; a name another transaction took meanwhile is NAME_TAKEN (the caller's
    transaction is then rolled back)."""
    try:
        await session.flush()
    except IntegrityError as error:
        raise InvalidSubscription(Problem.NAME_TAKEN) from error


async def create_subscription(
    session: AsyncSession, checked: CheckedSubscription, *, by: str, now: datetime
) -> WebhookSubscription:
    """A new subscription with a fresh secret (its ``secret`` is to be shown once), or
    InvalidSubscription (NAME_TAKEN)."""
    await _name_taken(session, checked.name, None)
    subscription = WebhookSubscription(
        name=checked.name,
        url=checked.url,
        events=checked.events,
        secret=new_secret(),
        include_msisdn=checked.include_msisdn,
        active=checked.active,
        created_by=by,
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    await _flushed(session)
    return subscription


async def update_subscription(
    session: AsyncSession, subscription: WebhookSubscription, checked: CheckedSubscription, *, now: datetime
) -> None:
    """Changes name, URL, events, MSISDN flag and active; the secret stays."""
    await _name_taken(session, checked.name, subscription.id)
    subscription.name = checked.name
    subscription.url = checked.url
    subscription.events = checked.events
    subscription.include_msisdn = checked.include_msisdn
    subscription.active = checked.active
    subscription.updated_at = now
    await _flushed(session)


def rotate_secret(subscription: WebhookSubscription, now: datetime) -> str:
    """A new secret (to be shown once): deliveries signed from now on use it, and for
    :data:`ROTATION_GRACE` the old one too (two ``v1=``), so receivers can switch without a gap."""
    subscription.previous_secret = subscription.secret
    subscription.previous_secret_until = now + ROTATION_GRACE
    subscription.secret = new_secret()
    subscription.updated_at = now
    return subscription.secret


async def delete_subscription(session: AsyncSession, subscription: WebhookSubscription) -> None:
    """The subscription and its queued and past deliveries."""
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id))
    await session.delete(subscription)


async def get_subscription(session: AsyncSession, subscription_id: int) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, subscription_id)


async def list_subscriptions(session: AsyncSession) -> list[WebhookSubscription]:
    return list((await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.name))).all())


async def active_subscriptions(session: AsyncSession) -> list[WebhookSubscription]:
    statement = select(WebhookSubscription).where(WebhookSubscription.active).order_by(WebhookSubscription.id)
    return list((await session.scalars(statement)).all())


async def recent_deliveries(
    session: AsyncSession,
    subscription_id: int,
    *,
    state: str | None = None,
    failing: bool = False,
    limit: int = 100,
    before: int | None = None,
) -> list[WebhookDelivery]:
    """The subscription's latest deliveries, newest first (``state``: only those in that state;
    ``failing``: only pending ones with a failed try; ``before``: only those of a lower id, the next
    page after the one that ended at that id)."""
    statement = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    if state is not None:
        statement = statement.where(WebhookDelivery.state == state)
    if failing:
        statement = statement.where(
            WebhookDelivery.state == DeliveryState.PENDING, WebhookDelivery.attempts > 0
        )
    return list((await session.scalars(statement.order_by(WebhookDelivery.id.desc()).limit(limit))).all())


async def redeliver(
    session: AsyncSession,
    queue: DeliveryQueue,
    subscription_id: int,
    delivery_ids: Iterable[int] | None,
    now: datetime,
) -> int:
    """Queues dead deliveries again (those of ``delivery_ids``, or all the subscription's dead ones when
    None), as fresh: attempts from zero, their age from now (``requeued_at``; ``created_at`` stays), each
    its client's next (due now when the client has nothing
    else in flight, else behind the one that is). Returns how many."""
    dead: list[ColumnElement[bool]] = [
        WebhookDelivery.subscription_id == subscription_id,
        WebhookDelivery.state == DeliveryState.DEAD,
    ]
    if delivery_ids is not None:
        dead.append(among(WebhookDelivery.id, list(delivery_ids)))
    clients = (await session.scalars(select(WebhookDelivery.ordering_key).where(*dead).distinct())).all()
    keys = [(subscription_id, client) for client in clients]
    await queue.lock_keys(session, keys)
    result = await session.execute(
        update(WebhookDelivery)
        .where(*dead)
        .values(state=DeliveryState.WAITING.value, attempts=0, next_attempt_at=now, requeued_at=now)
    )
    await promote_heads(session, keys, now)
    return int(getattr(result, "rowcount", 0) or 0)


async def announce_change(bus: EventBus | None) -> None:
    """Tells every daemon to read the active subscriptions again (after the commit)."""
    if bus is not None:
        await bus.publish(bus.topics.webhooks_changed(), {})


async def delivery_counts(session: AsyncSession) -> dict[int, dict[str, int]]:
    """Per subscription, its deliveries per state (``waiting`` ones counted as ``pending``: not yet
    delivered)."""
    rows = await session.execute(
        select(WebhookDelivery.subscription_id, WebhookDelivery.state, func.count()).group_by(
            WebhookDelivery.subscription_id, WebhookDelivery.state
        )
    )
    counts: dict[int, dict[str, int]] = {}
    for subscription_id, state, count in rows:
        shown = DeliveryState.PENDING.value if state == DeliveryState.WAITING else state
        per_state = counts.setdefault(subscription_id, {})
        per_state[shown] = per_state.get(shown, 0) + int(count)
    return counts
