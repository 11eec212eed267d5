"""The operator's desk: queue, conversation thread, reply with a live counter, client card, push."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gatewayd.masking import masked
from gatewayd.outbox import MTRequest, OutboxError, Prepared, TextRefused
from gatewayd.store.accounts import Presence
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.errors import MTRefused
from gatewayd.store.premium import account_of
from gatewayd.store.repo_desk import (
    ConversationView,
    PushRow,
    ReplyTarget,
    conversation_view,
    get_conversation,
    next_waiting,
    operator_queue,
    recent_pushes,
    reply_target,
    sent_mt_status,
)
from gatewayd.store.repo_subscribers import get_subscriber_by_client_id, update_subscriber_details
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.audit import audit, entry_for
from panel.auth.identity import CurrentUser
from panel.auth.permissions import OPERATOR_MODE
from panel.i18n import zone_or_utc
from panel.web import db, db_read, error_response, panel, render, require_user, textarea_text
from plugins.desk.charts import client_charts
from plugins.desk.compose import counter, preview
from plugins.desk.labels import LABELS, NO_CARRIER, NOTICES, REFUSED, TEXT_REFUSED
from plugins.desk.masking import masked_thread
from plugins.desk.permissions import OPERATOR_SEE_MSISDN, OPERATOR_SEE_OTHERS, PUSH_SEND
from plugins.desk.service import assignment_service, desk_outbox, desk_settings
from plugins.desk.stream import desk_events
from plugins.gallery.links import photo_picker
from routing.premium import PremiumState, standing
from smpp.errors import SMPPError
from translations import N_

MAX_ALIAS = 64
MAX_NOTES = 2000
DETAILS_TOO_LONG = N_("Nothing was saved: the alias takes at most 64 characters and the notes 2,000.")


class Rejected(Exception):
    """A form the desk refuses; ``key`` is the message shown to the operator."""

    def __init__(self, key: str, status: int = 400) -> None:
        super().__init__(key)
        self.key = key
        self.status = status


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _int_param(value: str | None) -> int | None:
    # isascii: "²" is a digit to isdigit(), not to int()
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def _masked_view(view: ConversationView, show_msisdn: bool) -> ConversationView:
    """The thread as the operator may see it (see :func:`plugins.desk.masking.masked_thread`)."""
    msisdn = view.subscriber.msisdn
    return replace(
        view,
        thread=masked_thread(view.thread, msisdn, show_msisdn),
        earlier=masked_thread(view.earlier, msisdn, show_msisdn),
    )


def _may_view(user: CurrentUser, conversation: Conversation) -> bool:
    return conversation.assigned_operator_id == user.account_id or user.has(OPERATOR_SEE_OTHERS)


@dataclass(frozen=True, slots=True)
class DeskPage:
    selected: int | None
    error: str | None = None
    draft: str = ""
    status_code: int = 200


async def _card(session: AsyncSession, request: Request, view: ConversationView) -> dict[str, Any]:
    user = require_user(request)
    now = utcnow()
    charts = await client_charts(session, view.subscriber.id, now, zone_or_utc(user.timezone))
    return {
        "subscriber": view.subscriber,
        "charts": charts,
        "premium": await _premium(session, request, view, now),
    }


async def _premium(
    session: AsyncSession, request: Request, view: ConversationView, now: datetime
) -> dict[str, Any] | None:
    """The client's standing on the conversation's billed service (None: the service bills nothing):
    the month's spend, the currency and the state that holds the operator's replies."""
    settings = desk_outbox(panel(request)).settings.premium
    service = view.conversation.service
    terms = settings.terms.get(service) if service is not None else None
    if service is None or terms is None:
        return None
    spent, state = standing(await account_of(session, view.subscriber.id, service), terms, now)
    accept = sorted(settings.accepts(view.subscriber.country))
    return {
        "spent": spent,  # minor units, written in the reader's language by the page
        "currency": terms.currency,
        "state": state.value,
        "held": state is not PremiumState.NORMAL,
        "keywords": " / ".join(accept),
    }


async def _render_desk(request: Request, page: DeskPage) -> Response:
    user = require_user(request)
    settings = desk_settings(panel(request))
    now = utcnow()
    card: dict[str, Any] | None = None
    view: ConversationView | None = None
    notice = request.query_params.get("notice")
    notice_mt: dict[str, Any] | None = None
    async with db_read(request) as session:
        queue = await operator_queue(session, user.account_id, now, settings.policy.overdue_after)
        sent_id = _int_param(request.query_params.get("mt")) if notice == "sent" else None
        sent_status = await sent_mt_status(session, sent_id, user.account_id) if sent_id else None
        if sent_id is not None and sent_status is not None:
            notice_mt = {"id": sent_id, "status": sent_status}
        if page.selected is not None:
            view = await conversation_view(session, page.selected)
            if view is not None and not _may_view(user, view.conversation):
                return error_response(request, 403)
            if view is None:
                return error_response(request, 404)
            view = _masked_view(view, user.has(OPERATOR_SEE_MSISDN))
            card = await _card(session, request, view)
    context: dict[str, Any] = {
        "queue": queue,
        "view": view,
        "card": card,
        "can_reply": view is not None
        and view.conversation.assigned_operator_id == user.account_id
        and view.conversation.status is not ConversationStatus.CLOSED,
        "show_msisdn": user.has(OPERATOR_SEE_MSISDN),
        "can_push": user.has(PUSH_SEND),
        "presences": [presence.value for presence in Presence],
        "presence": user.presence.value,
        "overdue_seconds": int(settings.policy.overdue_after.total_seconds()),
        "notice": notice if notice in NOTICES else None,
        "notice_mt": notice_mt,
        "error": page.error,
        "draft": page.draft,
        "counter": counter(request, page.draft),
        "labels": LABELS,
    }
    if context["can_reply"]:
        context.update(await photo_picker(request))
    return render(request, "desk/desk.html", context, status_code=page.status_code)


@requires(OPERATOR_MODE)
async def desk(request: Request) -> Response:
    user = require_user(request)
    selected = _int_param(request.query_params.get("c"))
    if selected is None:
        async with db_read(request) as session:
            selected = await next_waiting(session, user.account_id)
        selected = selected or _int_param(request.query_params.get("after"))
    return await _render_desk(request, DeskPage(selected))


@requires(OPERATOR_MODE)
async def change_presence(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    try:
        presence = Presence(_text(form, "presence", 16))
    except ValueError:
        return error_response(request, 400)
    record = entry_for(request, "operator.presence", subject=f"account:{user.account_id}")
    await assignment_service(panel(request)).change_presence(user.account_id, presence, audit=record)
    return RedirectResponse("/desk", status_code=303)


def _reply_request(target: ReplyTarget, text: str, operator_id: int) -> MTRequest:
    """A reply: to the conversation's subscriber, from its short code, answering its latest MO (the
    carrier and bind it came by, the variables' values)."""
    return MTRequest(
        to=target.subscriber.msisdn,
        text=text,
        kind=MTKind.REPLY,
        source=target.conversation.short_code,
        subscriber_id=target.subscriber.id,
        conversation_id=target.conversation.id,
        operator_id=operator_id,
        mo=target.last_mo,
    )


def _push_request(subscriber: Subscriber, text: str, operator_id: int) -> MTRequest:
    """A push: to the client, the way they last wrote (the outbox picks it), no MO answered."""
    return MTRequest(
        to=subscriber.msisdn,
        text=text,
        kind=MTKind.PUSH,
        subscriber_id=subscriber.id,
        operator_id=operator_id,
    )


@requires(OPERATOR_MODE)
async def reply(request: Request) -> Response:
    user = require_user(request)
    conversation_id = int(request.path_params["conversation_id"])
    form = await request.form()
    draft = textarea_text(form, "text", 5000)
    outbox = desk_outbox(panel(request))
    try:
        async with db(request) as session, session.begin():
            target = await reply_target(session, conversation_id)
            if target is None:
                return error_response(request, 404)
            conversation = target.conversation
            if (
                conversation.assigned_operator_id != user.account_id
                or conversation.status is ConversationStatus.CLOSED
            ):
                raise Rejected(N_("This conversation is not assigned to you."), 403)
            queued = await outbox.queue_one_in(session, _reply_request(target, draft, user.account_id))
            await audit(
                session,
                request,
                "mt.sent",
                subject=f"conversation:{conversation_id}",
                details={
                    "mt_ids": [queued.mt_id],
                    "kind": MTKind.REPLY.value,
                    "operator_id": user.account_id,
                },
            )
    except MTRefused as refused:
        page = DeskPage(conversation_id, REFUSED[refused.reason], draft, 409)
        return await _render_desk(request, page)
    except TextRefused as error:
        page = DeskPage(conversation_id, TEXT_REFUSED[error.reason], draft, 400)
        return await _render_desk(request, page)
    except OutboxError:
        return await _render_desk(request, DeskPage(conversation_id, NO_CARRIER, draft, 409))
    except Rejected as rejected:
        return await _render_desk(request, DeskPage(conversation_id, rejected.key, draft, rejected.status))
    await outbox.announce([queued])
    return RedirectResponse(f"/desk?after={conversation_id}&notice=sent&mt={queued.mt_id}", status_code=303)


@requires(OPERATOR_MODE)
async def close(request: Request) -> Response:
    user = require_user(request)
    conversation_id = int(request.path_params["conversation_id"])
    record = entry_for(request, "conversation.close", subject=f"conversation:{conversation_id}")
    closed = await assignment_service(panel(request)).close(conversation_id, user.account_id, audit=record)
    if not closed:
        return error_response(request, 404)
    return RedirectResponse("/desk?notice=closed", status_code=303)


@requires(OPERATOR_MODE)
async def save_client(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    conversation_id = _int_param(_text(form, "conversation_id", 20))
    typed_alias = _text(form, "alias", 4 * MAX_ALIAS).strip()
    typed_notes = textarea_text(form, "notes", 4 * MAX_NOTES).strip()
    if len(typed_alias) > MAX_ALIAS or len(typed_notes) > MAX_NOTES:
        return error_response(request, 400, DETAILS_TOO_LONG)  # never cut what was typed
    alias, notes = typed_alias or None, typed_notes or None
    async with db(request) as session, session.begin():
        subscriber = await get_subscriber_by_client_id(session, request.path_params["client_id"])
        conversation = await get_conversation(session, conversation_id) if conversation_id else None
        if subscriber is None or conversation is None or conversation.subscriber_id != subscriber.id:
            return error_response(request, 404)
        if not _may_view(user, conversation):
            return error_response(request, 403)
        before = {"alias": subscriber.alias, "notes": subscriber.notes}
        after = {"alias": alias, "notes": notes}
        if before != after:
            await update_subscriber_details(session, subscriber.id, alias=alias, notes=notes)
            await audit(
                session,
                request,
                "client.details",
                subject=f"client:{subscriber.client_id}",
                details={"before": before, "after": after},
            )
    return RedirectResponse(f"/desk?c={conversation_id}&notice=saved", status_code=303)


@requires(OPERATOR_MODE)
async def draft(request: Request) -> Response:
    """The reply box's counter and preview, live: the draft rendered as the client will receive it
    (for the conversation or the client the form names), counted on that text; ``telefono`` masked
    in the preview for an operator without the MSISDN permission."""
    user = require_user(request)
    form = await request.form()
    text = textarea_text(form, "text", 5000)
    conversation_id = _int_param(_text(form, "conversation_id", 20))
    client = _text(form, "client_id", 16).strip().upper()
    show_msisdn = user.has(OPERATOR_SEE_MSISDN)
    prepared: Prepared | None = None
    if text.strip() and (conversation_id is not None or client):
        outbox = desk_outbox(panel(request))
        async with db_read(request) as session:
            mt: MTRequest | None = None
            if conversation_id is not None:
                target = await reply_target(session, conversation_id)
                if target is not None and _may_view(user, target.conversation):
                    mt = _reply_request(target, text, user.account_id)
            elif user.has(PUSH_SEND):
                subscriber = await get_subscriber_by_client_id(session, client)
                if subscriber is not None:
                    mt = _push_request(subscriber, text, user.account_id)
            if mt is not None:
                with contextlib.suppress(OutboxError):  # no way out for it: the send will say so
                    prepared = (await outbox.prepare(session, [mt], utcnow()))[0]
    rendered = prepared.text if prepared is not None else text
    try:
        info = counter(request, rendered)
    except SMPPError:
        info = counter(request, "")
        info["fits"] = False
    info["preview"] = preview(prepared, show_msisdn) if prepared is not None else text
    return JSONResponse(info)


async def _render_push(
    request: Request, *, error: str | None = None, client: str = "", text: str = "", status_code: int = 200
) -> Response:
    user = require_user(request)
    async with db_read(request) as session:
        pushes = await recent_pushes(session, user.account_id)
    show_msisdn = user.has(OPERATOR_SEE_MSISDN)
    pushes = [replace(row, text=masked(row.text, row.destination, show_msisdn)) for row in pushes]
    sent = _int_param(request.query_params.get("sent"))
    context = {
        "held": _held_until(request, next((row for row in pushes if row.id == sent), None)),
        "pushes": pushes,
        "error": error,
        "client": client or request.query_params.get("client", "")[:16],
        "draft": text,
        "counter": counter(request, text),
        "sent": sent,
        "labels": LABELS,
        **await photo_picker(request),
    }
    return render(request, "desk/push.html", context, status_code=status_code)


def _held_until(request: Request, row: PushRow | None) -> str | None:
    """``HH:MM`` on the client's clock when the push just sent is held for their quiet hours, else None
    (a push given back to the queue for a while, a bind down, is not held for quiet hours)."""
    if row is None or row.status is not MTStatus.QUEUED or request.query_params.get("held") != "1":
        return None
    leaves = row.next_attempt_at if row.next_attempt_at.tzinfo else row.next_attempt_at.replace(tzinfo=UTC)
    zone = panel(request).settings.outbox.client_zone(row.country, row.destination)
    if zone is None or leaves <= utcnow():
        return None
    return f"{leaves.astimezone(zone):%H:%M}"


@requires(OPERATOR_MODE, PUSH_SEND)
async def push_page(request: Request) -> Response:
    return await _render_push(request)


@requires(OPERATOR_MODE, PUSH_SEND)
async def push(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    client = _text(form, "client_id", 16).strip().upper()
    draft = textarea_text(form, "text", 5000)
    outbox = desk_outbox(panel(request))
    try:
        async with db(request) as session, session.begin():
            subscriber = await get_subscriber_by_client_id(session, client) if client else None
            if subscriber is None:
                raise Rejected(N_("There is no client with that ID."), 404)
            queued = await outbox.queue_one_in(session, _push_request(subscriber, draft, user.account_id))
            details: dict[str, Any] = {
                "mt_ids": [queued.mt_id],
                "kind": MTKind.PUSH.value,
                "operator_id": user.account_id,
            }
            if queued.held_until is not None:
                details["held_until"] = queued.held_until.isoformat()  # the client's quiet hours
            await audit(
                session, request, "mt.sent", subject=f"client:{subscriber.client_id}", details=details
            )
    except MTRefused as refused:
        return await _render_push(
            request,
            error=REFUSED[refused.reason],
            client=client,
            text=draft,
            status_code=409,
        )
    except TextRefused as error:
        return await _render_push(
            request, error=TEXT_REFUSED[error.reason], client=client, text=draft, status_code=400
        )
    except OutboxError:
        return await _render_push(request, error=NO_CARRIER, client=client, text=draft, status_code=409)
    except Rejected as rejected:
        return await _render_push(
            request, error=rejected.key, client=client, text=draft, status_code=rejected.status
        )
    await outbox.announce([queued])
    held = "&held=1" if queued.held_until is not None else ""  # the outbox held it, nothing else did
    return RedirectResponse(f"/desk/push?sent={queued.mt_id}{held}", status_code=303)


routes = [
    Route("/desk", desk, methods=["GET"], name="desk.desk"),
    Route("/desk/events", desk_events, methods=["GET"], name="desk.events"),
    Route("/desk/presence", change_presence, methods=["POST"], name="desk.presence"),
    Route("/desk/draft", draft, methods=["POST"], name="desk.draft"),
    Route("/desk/conversations/{conversation_id:id}/reply", reply, methods=["POST"], name="desk.reply"),
    Route("/desk/conversations/{conversation_id:id}/close", close, methods=["POST"], name="desk.close"),
    Route("/desk/clients/{client_id}/details", save_client, methods=["POST"], name="desk.client"),
    Route("/desk/push", push_page, methods=["GET"], name="desk.push_page"),
    Route("/desk/push", push, methods=["POST"], name="desk.push"),
]
