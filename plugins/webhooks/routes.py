"""The webhooks pages, for those holding ``webhooks.manage``: /admin/webhooks (the subscriptions, a new
one) and /admin/webhooks/{id} (change, disable, rotate the secret, delete; its deliveries: recent,
failing, dead, and "redeliver"). Every change is audited in its own transaction and announced on the
bus so that the daemons read the subscriptions again. A secret is shown once: at creation and rotation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.net_safety import MAX_URL
from gatewayd.store.base import utcnow
from gatewayd.store.store import Store
from gatewayd.store.webhooks import NAME_LENGTH, DeliveryState, WebhookDelivery, WebhookSubscription
from gatewayd.webhooks.subscriptions import (
    EVENTS,
    InvalidSubscription,
    Problem,
    SubscriptionInput,
    announce_change,
    check_subscription,
    create_subscription,
    delete_subscription,
    delivery_counts,
    described,
    get_subscription,
    list_subscriptions,
    recent_deliveries,
    redeliver,
    rotate_secret,
    update_subscription,
)
from panel.access import requires
from panel.audit import audit
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db, db_read, error_response, panel, render, require_user
from plugins.desk.permissions import OPERATOR_SEE_MSISDN
from plugins.webhooks.permissions import WEBHOOKS_MANAGE
from translations import N_

LIST_PATH = "/admin/webhooks"
DELIVERIES_SHOWN = 100

EVENT_LABELS = {
    "mo.received": N_("MO received"),
    "mt.status": N_("MT status changed"),
    "mt.receipt": N_("Delivery receipt"),
    "client.opt_out": N_("Client opted out"),
    "client.opt_in": N_("Client opted in again"),
}
PROBLEMS = {
    Problem.NAME: N_("Give a name of 1 to 64 characters."),
    Problem.NAME_TAKEN: N_("A subscription of that name exists already."),
    Problem.NO_EVENTS: N_("Choose at least one event."),
    Problem.UNKNOWN_EVENT: N_("Choose events from the list."),
    Problem.BAD_URL: N_("Give an http:// or https:// address, without user name or password."),
    Problem.NO_HOST: N_("The address's host name could not be resolved."),
    Problem.NOT_PUBLIC: N_(
        "The address leads to a local, private or reserved network (loopback, 10.x, 192.168.x, 169.254.x…): "
        "webhooks only go to public addresses unless [webhooks] allow lists it."
    ),
}
#: Whoever may not read the clients' numbers may not send them to another system either.
MSISDN_REFUSED = N_(
    "Your account may not see clients' phone numbers, so its subscriptions cannot carry them: "
    "untick the phone number option."
)
NOTICES = {
    "saved": N_("The subscription was saved."),
    "deleted": N_("The subscription and its deliveries were deleted."),
    "redelivered": N_("The dead deliveries were queued again."),
}
STATES = {
    "": N_("Recent"),
    "failing": N_("Failing"),
    DeliveryState.DEAD.value: N_("Dead"),
}


def _input(form: FormData) -> SubscriptionInput:
    name = form.get("name")
    url = form.get("url")
    return SubscriptionInput(
        name=name[: NAME_LENGTH * 2] if isinstance(name, str) else "",
        url=url[: MAX_URL + 1] if isinstance(url, str) else "",
        events=[event for event in form.getlist("events") if isinstance(event, str)][: len(EVENTS) * 2],
        include_msisdn=form.get("include_msisdn") == "on",
        # the form sends a hidden "off" before the checkbox: ticked is "on" among the values
        active=not form.getlist("active") or "on" in form.getlist("active"),
    )


def _subject(subscription: WebhookSubscription) -> str:
    return f"webhook:{subscription.id}"


async def _list_page(request: Request, status: int = 200, **context: Any) -> Response:
    async with db_read(request) as session:
        subscriptions = await list_subscriptions(session)
        counts = await delivery_counts(session)
    values = {
        "title": N_("Webhooks"),
        "subscriptions": subscriptions,
        "counts": counts,
        "events": EVENT_LABELS,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "error": None,
        "given": None,
        "secret": None,
        "created": None,
        "may_include_msisdn": require_user(request).has(OPERATOR_SEE_MSISDN),
        **context,
    }
    return render(request, "webhooks/list.html", values, status_code=status)


async def _detail_page(request: Request, subscription_id: int, status: int = 200, **context: Any) -> Response:
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    async with db_read(request) as session:
        subscription = await get_subscription(session, subscription_id)
        if subscription is None:
            return error_response(request, 404, N_("There is no such subscription."))
        if state == "failing":
            deliveries = await recent_deliveries(
                session, subscription_id, failing=True, limit=DELIVERIES_SHOWN
            )
        else:
            deliveries = await recent_deliveries(
                session, subscription_id, state=state or None, limit=DELIVERIES_SHOWN
            )
        counts = (await delivery_counts(session)).get(subscription_id, {})
    values = {
        "title": N_("Webhook"),
        "subscription": subscription,
        "deliveries": deliveries,
        "counts": counts,
        "state": state,
        "states": STATES,
        "events": EVENT_LABELS,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "error": None,
        "secret": None,
        "may_include_msisdn": require_user(request).has(OPERATOR_SEE_MSISDN),
        **context,
    }
    return render(request, "webhooks/detail.html", values, status_code=status)


def _id(request: Request) -> int:
    return int(request.path_params["subscription_id"])


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def list_page(request: Request) -> Response:
    return await _list_page(request)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def create(request: Request) -> Response:
    given = _input(await request.form())
    if given.include_msisdn and not require_user(request).has(OPERATOR_SEE_MSISDN):
        return await _list_page(request, 403, error=MSISDN_REFUSED, given=given)
    try:
        # the URL's DNS look-up before the transaction: no lock waits on it
        checked = await check_subscription(given, panel(request).settings.webhooks_allow)
        async with db(request) as session, session.begin():
            subscription = await create_subscription(
                session, checked, by=require_user(request).username, now=utcnow()
            )
            details = {"before": None, "after": described(subscription)}
            await audit(session, request, "webhook.create", subject=_subject(subscription), details=details)
            secret, name = subscription.secret, subscription.name
    except InvalidSubscription as invalid:
        return await _list_page(request, 400, error=PROBLEMS[invalid.problem], given=given)
    await announce_change(panel(request).bus)
    return await _list_page(request, secret=secret, created=name)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def detail(request: Request) -> Response:
    return await _detail_page(request, _id(request))


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def update(request: Request) -> Response:
    subscription_id = _id(request)
    given = _input(await request.form())
    try:
        # the URL's DNS look-up before the row is locked
        checked = await check_subscription(given, panel(request).settings.webhooks_allow)
        async with db(request) as session, session.begin():
            subscription = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
            if subscription is None:
                return error_response(request, 404, N_("There is no such subscription."))
            if not require_user(request).has(OPERATOR_SEE_MSISDN):
                # the box is not theirs to change: a subscription that carries numbers keeps them
                checked = replace(checked, include_msisdn=subscription.include_msisdn)
            before = described(subscription)
            await update_subscription(session, subscription, checked, now=utcnow())
            details = {"before": before, "after": described(subscription)}
            await audit(session, request, "webhook.update", subject=_subject(subscription), details=details)
    except InvalidSubscription as invalid:
        return await _detail_page(request, subscription_id, 400, error=PROBLEMS[invalid.problem])
    await announce_change(panel(request).bus)
    return RedirectResponse(f"{LIST_PATH}/{subscription_id}?notice=saved", status_code=303)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def rotate(request: Request) -> Response:
    subscription_id = _id(request)
    async with db(request) as session, session.begin():
        subscription = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
        if subscription is None:
            return error_response(request, 404, N_("There is no such subscription."))
        secret = rotate_secret(subscription, utcnow())
        await audit(session, request, "webhook.rotate_secret", subject=_subject(subscription))
    await announce_change(panel(request).bus)
    return await _detail_page(request, subscription_id, secret=secret)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def delete(request: Request) -> Response:
    async with db(request) as session, session.begin():
        subscription = await session.get(WebhookSubscription, _id(request), with_for_update=True)
        if subscription is None:
            return error_response(request, 404, N_("There is no such subscription."))
        details = {"before": described(subscription), "after": None}
        await audit(session, request, "webhook.delete", subject=_subject(subscription), details=details)
        await delete_subscription(session, subscription)
    await announce_change(panel(request).bus)
    return RedirectResponse(f"{LIST_PATH}?notice=deleted", status_code=303)


async def _redeliver(request: Request, delivery_id: int | None) -> Response:
    subscription_id = _id(request)
    async with db(request) as session, session.begin():
        subscription = await session.get(WebhookSubscription, subscription_id)
        if subscription is None:
            return error_response(request, 404, N_("There is no such subscription."))
        if delivery_id is not None:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.subscription_id != subscription_id:
                return error_response(request, 404, N_("There is no such delivery."))
            if delivery.state != DeliveryState.DEAD:
                return error_response(request, 409, N_("Only a dead delivery can be redelivered."))
        ids = None if delivery_id is None else [delivery_id]
        queue = Store.for_engine(panel(request).engine).webhook_queue  # the dialect's statements
        queued = await redeliver(session, queue, subscription_id, ids, utcnow())
        details = {"deliveries": "all dead" if delivery_id is None else delivery_id, "queued": queued}
        await audit(session, request, "webhook.redeliver", subject=_subject(subscription), details=details)
    return RedirectResponse(f"{LIST_PATH}/{subscription_id}?notice=redelivered", status_code=303)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def redeliver_all(request: Request) -> Response:
    return await _redeliver(request, None)


@requires(PANEL_ACCESS, WEBHOOKS_MANAGE)
async def redeliver_one(request: Request) -> Response:
    return await _redeliver(request, int(request.path_params["delivery_id"]))


ONE = LIST_PATH + "/{subscription_id:id}"
DELIVERY = ONE + "/deliveries/{delivery_id:id}"
routes = [
    Route(LIST_PATH, list_page, methods=["GET"], name="webhooks.list"),
    Route(LIST_PATH, create, methods=["POST"], name="webhooks.create"),
    Route(ONE, detail, methods=["GET"], name="webhooks.detail"),
    Route(ONE, update, methods=["POST"], name="webhooks.update"),
    Route(ONE + "/rotate", rotate, methods=["POST"], name="webhooks.rotate"),
    Route(ONE + "/delete", delete, methods=["POST"], name="webhooks.delete"),
    Route(ONE + "/redeliver", redeliver_all, methods=["POST"], name="webhooks.redeliver_all"),
    Route(DELIVERY + "/redeliver", redeliver_one, methods=["POST"], name="webhooks.redeliver"),
]
