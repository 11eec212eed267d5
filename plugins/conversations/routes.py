"""The conversation browser: search conversations (client ID, alias, operator, text, dates in the
reader's time zone, service), newest first, a page at a time by keyset; read one conversation whole;
read a client's whole history across their conversations. Numbers masked for those who may not see
them (:mod:`plugins.desk.masking`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatewayd.store.conversations import Conversation
from gatewayd.store.repo_history import (
    SearchFilters,
    client_history,
    conversation_thread,
    search_choices,
    search_conversations,
)
from gatewayd.store.repo_subscribers import client_id_of, get_subscriber_by_client_id
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.auth.permissions import PANEL_ACCESS
from panel.i18n import zone_or_utc
from panel.web import db_read, error_response, render, require_user
from plugins.desk.labels import LABELS
from plugins.desk.masking import masked_thread
from plugins.desk.permissions import OPERATOR_SEE_MSISDN, OPERATOR_SEE_OTHERS
from translations import N_

#: Conversations a page lists.
PAGE_SIZE = 50
#: Messages a conversation or a client's history shows at most (the newest).
THREAD_LIMIT = 500
#: The longest text a search field takes.
MAX_FIELD = 100
FILTERS = ("client", "alias", "operator", "text", "since", "until", "service")
#: The years a date filter takes: near year 1 or 9999 the reader's zone (or the day after the last)
#: steps off the calendar.
FIRST_YEAR, LAST_YEAR = 2000, 9998


class BadFilter(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class Query:
    """The search form as given (shown back) and as understood."""

    values: dict[str, str]
    filters: SearchFilters
    before: int | None


def _day(value: str, zone_name: str, *, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadFilter(N_("Dates are written YYYY-MM-DD.")) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise BadFilter(N_("Dates are written YYYY-MM-DD."))
    if end:
        day += timedelta(days=1)
    local = datetime.combine(day, time(), tzinfo=zone_or_utc(zone_name))
    return local.astimezone(UTC)


def _id(value: str, key: str) -> int | None:
    if not value:
        return None
    # isascii: "²" is a digit to isdigit(), not to int()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadFilter(key)
    return int(value)


def parse_query(request: Request, zone_name: str) -> Query:
    """The filters of the address, or :class:`BadFilter` with the message to show."""
    params = request.query_params
    values = {name: params.get(name, "").strip() for name in FILTERS}
    if any(len(value) > MAX_FIELD for value in values.values()):
        raise BadFilter(N_("A search field may be at most 100 characters long."))
    client_id = None
    if values["client"]:
        client_id = client_id_of(values["client"])
        if client_id is None:
            raise BadFilter(N_("Enter a client ID (C and 8 letters or digits)."))
    since = _day(values["since"], zone_name, end=False)
    until = _day(values["until"], zone_name, end=True)
    if since is not None and until is not None and until <= since:
        raise BadFilter(N_("The first date must not be after the last one."))
    filters = SearchFilters(
        client_id=client_id,
        alias=values["alias"] or None,
        operator_id=_id(values["operator"], N_("Choose an operator from the list.")),
        text=values["text"] or None,
        since=since,
        until=until,
        service=values["service"] or None,
    )
    before = _id(params.get("before", ""), N_("That page does not exist."))
    return Query(values, filters, before)


def _page_address(values: dict[str, str], before: int) -> str:
    kept = {name: value for name, value in values.items() if value}
    return "/admin/conversations?" + urlencode({**kept, "before": str(before)})


@requires(PANEL_ACCESS, OPERATOR_SEE_OTHERS)
async def browser(request: Request) -> Response:
    user = require_user(request)
    error: str | None = None
    values = {name: request.query_params.get(name, "")[:MAX_FIELD] for name in FILTERS}
    rows: list[Any] = []
    next_page: str | None = None
    async with db_read(request) as session:
        operators, services = await search_choices(session)
        try:
            query = parse_query(request, user.timezone)
        except BadFilter as bad:
            error = bad.key
        else:
            values = query.values
            if query.filters.operator_id is not None and query.filters.operator_id not in dict(operators):
                error = N_("Choose an operator from the list.")
            else:
                found = await search_conversations(
                    session, query.filters, before=query.before, limit=PAGE_SIZE + 1
                )
                rows = found[:PAGE_SIZE]
                if len(found) > PAGE_SIZE:
                    next_page = _page_address(values, rows[-1].id)
    context = {
        "title": N_("Conversations"),
        "values": values,
        "operators": operators,
        "services": services,
        "rows": rows,
        "next_page": next_page,
        "first_page": "/admin/conversations?" + urlencode({k: v for k, v in values.items() if v}),
        "paged": request.query_params.get("before") is not None,
        "error": error,
        "show_msisdn": user.has(OPERATOR_SEE_MSISDN),
        "labels": LABELS,
    }
    return render(request, "conversations/browser.html", context, status_code=400 if error else 200)


@requires(PANEL_ACCESS, OPERATOR_SEE_OTHERS)
async def conversation(request: Request) -> Response:
    user = require_user(request)
    conversation_id = int(request.path_params["conversation_id"])
    show_msisdn = user.has(OPERATOR_SEE_MSISDN)
    async with db_read(request) as session:
        found = await session.get(Conversation, conversation_id)
        subscriber = await session.get(Subscriber, found.subscriber_id) if found is not None else None
        if found is None or subscriber is None:
            return error_response(request, 404)
        thread = await conversation_thread(session, found, THREAD_LIMIT)
    context = {
        "title": N_("Conversation"),
        "conversation": found,
        "subscriber": subscriber,
        "thread": masked_thread(thread, subscriber.msisdn, show_msisdn),
        "show_msisdn": show_msisdn,
        "labels": LABELS,
        "limit": THREAD_LIMIT,
    }
    return render(request, "conversations/conversation.html", context)


@requires(PANEL_ACCESS, OPERATOR_SEE_OTHERS)
async def history(request: Request) -> Response:
    user = require_user(request)
    client_id = client_id_of(request.path_params["client_id"])
    if client_id is None:
        return error_response(request, 404)
    show_msisdn = user.has(OPERATOR_SEE_MSISDN)
    async with db_read(request) as session:
        subscriber = await get_subscriber_by_client_id(session, client_id)
        if subscriber is None:
            return error_response(request, 404)
        entries = await client_history(session, subscriber.id, THREAD_LIMIT)
    entries = masked_thread(entries, subscriber.msisdn, show_msisdn)
    groups: list[tuple[int | None, list[Any]]] = []
    for entry in entries:
        if groups and groups[-1][0] == entry.conversation_id:
            groups[-1][1].append(entry)
        else:
            groups.append((entry.conversation_id, [entry]))
    context = {
        "title": N_("Client history"),
        "subscriber": subscriber,
        "groups": groups,
        "count": len(entries),
        "show_msisdn": show_msisdn,
        "labels": LABELS,
        "limit": THREAD_LIMIT,
    }
    return render(request, "conversations/history.html", context)


routes = [
    Route("/admin/conversations", browser, methods=["GET"], name="conversations.browser"),
    Route(
        "/admin/conversations/{conversation_id:id}",
        conversation,
        methods=["GET"],
        name="conversations.conversation",
    ),
    Route("/admin/clients/{client_id}/history", history, methods=["GET"], name="conversations.history"),
]
