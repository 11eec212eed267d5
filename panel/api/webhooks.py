"""Webhook subscriptions through the API (``admin`` scope), with the panel's semantics: the same service
functions (:mod:`gatewayd.webhooks.subscriptions`: the URL vetted before the transaction, names unique,
the secret shown once at creation and rotation), each change audited in its transaction and announced on
the bus after the commit so that the daemons read the subscriptions again."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.masking import masked
from gatewayd.store.apikeys import Scope
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.base import utcnow
from gatewayd.store.store import Store
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery, WebhookSubscription
from gatewayd.webhooks.subscriptions import (
    InvalidSubscription,
    SubscriptionInput,
    announce_change,
    check_subscription,
    create_subscription,
    delete_subscription,
    described,
    get_subscription,
    list_subscriptions,
    recent_deliveries,
    redeliver,
    rotate_secret,
    update_subscription,
)
from gatewayd.webhooks.subscriptions import Problem as Refused
from panel.api import models
from panel.api.operations import Call, Reply
from panel.api.problems import Problem
from panel.api.resources import decode_cursor, encode_cursor
from panel.audit import client_address
from panel.runtime import runtime

#: Why a subscription was refused, for the API's users: (the body's field, what to do).
REFUSALS: dict[Refused, tuple[str, str]] = {
    Refused.NAME: ("name", "Give a name of 1 to 64 characters."),
    Refused.NAME_TAKEN: ("name", "A subscription of that name exists already."),
    Refused.NO_EVENTS: ("events", "Choose at least one event."),
    Refused.UNKNOWN_EVENT: ("events", "Choose events from the documented list."),
    Refused.BAD_URL: ("url", "Give an http:// or https:// address, without user name or password."),
    Refused.NO_HOST: ("url", "The address's host name could not be resolved."),
    Refused.NOT_PUBLIC: (
        "url",
        "The address leads to a local, private or reserved network (loopback, 10.x, 192.168.x, "
        "169.254.x...): webhooks only go to public addresses unless [webhooks] allow lists it.",
    ),
}


def _refused(invalid: InvalidSubscription) -> Problem:
    field, text = REFUSALS[invalid.problem]
    if invalid.problem is Refused.NAME_TAKEN:
        return Problem(409, "name-taken", text)
    error = {"loc": ["body", field], "msg": text, "type": invalid.problem.value}
    return Problem(422, "invalid-subscription", text, reason=invalid.problem.value, errors=[error])


def _webhook(subscription: WebhookSubscription) -> models.Webhook:
    return models.Webhook(
        id=subscription.id,
        name=subscription.name,
        url=subscription.url,
        events=sorted(subscription.event_set),
        include_msisdn=subscription.include_msisdn,
        active=subscription.active,
        created_by=subscription.created_by,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def _id(call: Call) -> int:
    return int(call.request.path_params["webhook_id"])


def _missing(subscription_id: int) -> Problem:
    return Problem(404, "not-found", f"No webhook subscription {subscription_id}.")


def _may_include_msisdn(call: Call, include_msisdn: bool | None) -> None:
    # A payload with the number shows it to whoever runs the receiver: only a key that may see it.
    if include_msisdn and Scope.MSISDN.value not in call.caller.scopes:
        raise Problem(403, "missing-scope", "include_msisdn needs a key with the scope 'msisdn'.")


async def _audit(
    session: AsyncSession,
    call: Call,
    action: str,
    subscription: WebhookSubscription,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    entry = AuditEntry(
        action,
        call.caller.actor,
        source=client_address(call.request),
        subject=f"webhook:{subscription.id}",
        details={**details, "key": call.caller.name},
    )
    await append_audit(session, entry, now=now)


async def list_webhooks(call: Call) -> Reply:
    async with runtime(call.request).readers() as session:
        subscriptions = await list_subscriptions(session)
    return Reply.of(200, models.WebhookPage(items=[_webhook(item) for item in subscriptions]))


async def create_webhook(call: Call) -> Reply:
    body = call.body
    assert isinstance(body, models.WebhookIn)
    _may_include_msisdn(call, body.include_msisdn)
    state = runtime(call.request)
    given = SubscriptionInput(body.name, body.url, body.events, body.include_msisdn, body.active)
    try:
        # the URL's DNS look-up before the transaction: no lock waits on it
        checked = await check_subscription(given, state.settings.webhooks_allow)
        async with state.sessionmaker() as session, session.begin():
            now = utcnow()
            subscription = await create_subscription(session, checked, by=call.caller.actor, now=now)
            details = {"before": None, "after": described(subscription)}
            await _audit(session, call, "webhook.create", subscription, details, now)
            created = models.WebhookCreated(**_webhook(subscription).model_dump(), secret=subscription.secret)
    except InvalidSubscription as invalid:
        raise _refused(invalid) from None
    await announce_change(state.bus)
    return Reply(
        201, created.model_dump(mode="json"), headers={"location": f"{call.request.url.path}/{created.id}"}
    )


async def get_webhook(call: Call) -> Reply:
    subscription_id = _id(call)
    async with runtime(call.request).readers() as session:
        subscription = await get_subscription(session, subscription_id)
    if subscription is None:
        raise _missing(subscription_id)
    return Reply.of(200, _webhook(subscription))


async def update_webhook(call: Call) -> Reply:
    """The fields given replace the subscription's, checked as a whole by the panel's rules; the row
    read to merge them must be the one changed (else 409: it changed meanwhile)."""
    change = call.body
    assert isinstance(change, models.WebhookChange)
    subscription_id = _id(call)
    state = runtime(call.request)
    async with state.readers() as session:
        current = await get_subscription(session, subscription_id)
    if current is None:
        raise _missing(subscription_id)
    before = described(current)
    given = SubscriptionInput(
        name=change.name if change.name is not None else current.name,
        url=change.url if change.url is not None else current.url,
        events=change.events if change.events is not None else sorted(current.event_set),
        include_msisdn=(
            change.include_msisdn if change.include_msisdn is not None else current.include_msisdn
        ),
        active=change.active if change.active is not None else current.active,
    )
    # Any change that leaves the MSISDN in the payloads (a new URL, more events, waking it) decides
    # where numbers go: only a key that may see them (turning the flag off needs no such scope).
    _may_include_msisdn(call, given.include_msisdn)
    try:
        # the URL's DNS look-up before the row is locked
        checked = await check_subscription(given, state.settings.webhooks_allow)
        async with state.sessionmaker() as session, session.begin():
            subscription = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
            if subscription is None:
                raise _missing(subscription_id)
            if described(subscription) != before:
                raise Problem(
                    409, "changed-meanwhile", "The subscription changed while this was checked; try again."
                )
            now = utcnow()
            await update_subscription(session, subscription, checked, now=now)
            details = {"before": before, "after": described(subscription)}
            await _audit(session, call, "webhook.update", subscription, details, now)
            body = _webhook(subscription)
    except InvalidSubscription as invalid:
        raise _refused(invalid) from None
    await announce_change(state.bus)
    return Reply.of(200, body)


async def delete_webhook(call: Call) -> Reply:
    subscription_id = _id(call)
    state = runtime(call.request)
    async with state.sessionmaker() as session, session.begin():
        subscription = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
        if subscription is None:
            raise _missing(subscription_id)
        details = {"before": described(subscription), "after": None}
        await _audit(session, call, "webhook.delete", subscription, details, utcnow())
        await delete_subscription(session, subscription)
    await announce_change(state.bus)
    return Reply(204, {})


async def rotate_webhook_secret(call: Call) -> Reply:
    subscription_id = _id(call)
    state = runtime(call.request)
    async with state.sessionmaker() as session, session.begin():
        subscription = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
        if subscription is None:
            raise _missing(subscription_id)
        now = utcnow()
        secret = rotate_secret(subscription, now)
        await _audit(session, call, "webhook.rotate_secret", subscription, {}, now)
        assert subscription.previous_secret_until is not None
        body = models.WebhookSecret(
            id=subscription_id, secret=secret, previous_secret_until=subscription.previous_secret_until
        )
    await announce_change(state.bus)
    return Reply.of(200, body)


def _delivery(delivery: WebhookDelivery, seer: bool) -> models.Delivery:
    key = delivery.ordering_key
    # an MT to a number that never wrote has no client: its number is the ordering key (digits; a
    # client ID is never all digits), hidden from a key without the msisdn scope as everywhere
    return models.Delivery(
        id=delivery.id,
        event=delivery.event,
        client_id=masked(key, key, seer) if key.isdigit() else key,
        state=delivery.state,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        requeued_at=delivery.requeued_at,
        delivered_at=delivery.delivered_at,
    )


async def list_webhook_deliveries(call: Call) -> Reply:
    query = call.query
    assert isinstance(query, models.DeliveryQuery)
    subscription_id = _id(call)
    before = decode_cursor(query.cursor) if query.cursor is not None else None
    failing = query.state == "failing"
    async with runtime(call.request).readers() as session:
        if await get_subscription(session, subscription_id) is None:
            raise _missing(subscription_id)
        rows = await recent_deliveries(
            session,
            subscription_id,
            state=None if failing else query.state,
            failing=failing,
            limit=query.limit + 1,
            before=before,
        )
    page = rows[: query.limit]
    cursor = encode_cursor(page[-1].id) if len(rows) > query.limit else None
    seer = Scope.MSISDN.value in call.caller.scopes
    items = [_delivery(row, seer) for row in page]
    return Reply.of(200, models.DeliveryPage(items=items, next_cursor=cursor))


async def redeliver_webhook_delivery(call: Call) -> Reply:
    subscription_id = _id(call)
    delivery_id = int(call.request.path_params["delivery_id"])
    state = runtime(call.request)
    async with state.sessionmaker() as session, session.begin():
        subscription = await session.get(WebhookSubscription, subscription_id)
        if subscription is None:
            raise _missing(subscription_id)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.subscription_id != subscription_id:
            raise Problem(404, "not-found", f"No delivery {delivery_id} of subscription {subscription_id}.")
        if delivery.state != DeliveryState.DEAD:
            raise Problem(
                409, "not-dead", f"Only a dead delivery can be redelivered; this one is {delivery.state}."
            )
        now = utcnow()
        queue = Store.for_engine(state.engine).webhook_queue  # the dialect's statements
        queued = await redeliver(session, queue, subscription_id, [delivery_id], now)
        details = {"deliveries": delivery_id, "queued": queued}
        await _audit(session, call, "webhook.redeliver", subscription, details, now)
        await session.refresh(delivery)
        body = models.Redelivered(id=delivery_id, state=delivery.state)
    return Reply.of(200, body)
