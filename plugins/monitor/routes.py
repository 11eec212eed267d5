"""The live monitor (/admin/monitor): every live conversation coloured by state, filtered by service,
short code, carrier, operator and state; its event stream (/admin/monitor/events, same filters); and
the reassignment of one or many conversations to another operator or back to the queue
(:meth:`gatewayd.assignment.AssignmentService.reassign`, audited ``conversation.reassign`` in the
move's transaction; each desk hears the move on the bus).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.assignment import ReassignRefused
from gatewayd.store.base import MAX_INT32_ID, utcnow
from gatewayd.store.repo_monitor import (
    MonitorFilters,
    MonitorState,
    live_conversations,
    monitor_state,
    operator_loads,
    state_counts,
)
from panel.access import requires
from panel.audit import entry_for
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db_read, error_response, panel, render, require_user, translate
from plugins.desk.service import assignment_service, desk_settings
from plugins.monitor.permissions import MONITOR_VIEW
from plugins.monitor.stream import MonitorView, stream_response
from translations import N_

#: A service's overdue threshold when the configuration names no such service.
DEFAULT_OVERDUE = timedelta(seconds=120)
#: Conversations reassigned in one request at most.
MAX_REASSIGN = 500
QUEUE = "queue"

NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
SHORT_CODE = re.compile(r"^[0-9]{3,15}$")
ACCOUNT_ID = re.compile(r"^[1-9][0-9]{0,9}$")


def _is_account_id(text: str) -> bool:
    """An id accounts.id (32 bits) may hold."""
    return ACCOUNT_ID.match(text) is not None and int(text) <= MAX_INT32_ID


STATE_LABELS = {
    MonitorState.WAITING: N_("Waiting"),
    MonitorState.ASSIGNED: N_("Assigned, unanswered"),
    MonitorState.ANSWERED: N_("Answered"),
    MonitorState.OVERDUE: N_("Overdue"),
}
REFUSALS = {
    "unavailable": N_("That operator is not online at the desk: choose another."),
    "no_room": N_("That operator has no room for so many conversations: choose fewer or another."),
}


class BadFilter(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def parse_filters(params: QueryParams) -> MonitorFilters:
    """The filters of a query string (empty values: any); :class:`BadFilter` names the wrong one."""

    def value(name: str, pattern: re.Pattern[str], key: str) -> str | None:
        found = params.get(name, "").strip()
        if not found:
            return None
        if not pattern.match(found):
            raise BadFilter(key)
        return found

    service = value("service", NAME, N_("Unknown service filter."))
    short_code = value("short_code", SHORT_CODE, N_("A short code is 3 to 15 digits."))
    carrier = value("carrier", NAME, N_("Unknown carrier filter."))
    operator = params.get("operator", "").strip()
    operator_id: int | None = None
    if operator == QUEUE:
        operator_id = 0
    elif operator:
        if not _is_account_id(operator):
            raise BadFilter(N_("Unknown operator filter."))
        operator_id = int(operator)
    state_text = params.get("state", "").strip()
    state: MonitorState | None = None
    if state_text:
        try:
            state = MonitorState(state_text)
        except ValueError:
            raise BadFilter(N_("Unknown state filter.")) from None
    return MonitorFilters(service, short_code, carrier, operator_id, state)


def view_of(request: Request, filters: MonitorFilters) -> MonitorView:
    runtime = panel(request)
    thresholds = {
        item.name: timedelta(seconds=item.overdue_after) for item in runtime.settings.outbox.services
    }
    return MonitorView(runtime, require_user(request), filters, thresholds, DEFAULT_OVERDUE)


def _query(filters: MonitorFilters) -> dict[str, str]:
    operator = ""
    if filters.operator_id == 0:
        operator = QUEUE
    elif filters.operator_id is not None:
        operator = str(filters.operator_id)
    return {
        "service": filters.service or "",
        "short_code": filters.short_code or "",
        "carrier": filters.carrier or "",
        "operator": operator,
        "state": filters.state.value if filters.state is not None else "",
    }


async def _page(
    request: Request, filters: MonitorFilters, *, error: str | None = None, status: int = 200
) -> Response:
    view = view_of(request, filters)
    runtime = panel(request)
    policy = desk_settings(runtime).policy
    now = utcnow()
    async with db_read(request) as session:
        rows = await live_conversations(session, filters)
        loads = await operator_loads(session, now, policy.presence_grace, policy.session_idle)
    visible = view.visible(rows, now)
    compact = [view.row(row, now) for row in visible]
    counts = state_counts(
        {row.conversation_id: monitor_state(row, now, view.threshold(row.service)) for row in visible}
    )
    services = runtime.settings.outbox.services
    query = _query(filters)
    moved = request.query_params.get("moved", "")
    context: dict[str, Any] = {
        "title": N_("Live monitor"),
        "rows": compact,
        "total": len(compact),
        "counts": {state.value: count for state, count in counts.items()},
        "state_labels": {state.value: label for state, label in STATE_LABELS.items()},
        "state_labels_text": {
            state.value: translate(request, label) for state, label in STATE_LABELS.items()
        },
        "operators": [view.operator(load) for load in loads],
        "services": sorted({item.name for item in services}),
        "short_codes": sorted({item.short_code for item in services}),
        # the configured carriers, those of the rows shown and the one filtered by
        "carriers": sorted(
            {item.name for item in runtime.settings.outbox.carriers}
            | {row.carrier for row in visible if row.carrier}
            | ({filters.carrier} if filters.carrier else set())
        ),
        "query": query,
        "back": urlencode({k: v for k, v in query.items() if v}),
        "events_url": "/admin/monitor/events?" + urlencode({k: v for k, v in query.items() if v}),
        "thresholds": {name: int(limit.total_seconds()) for name, limit in view.thresholds.items()},
        "default_threshold": int(DEFAULT_OVERDUE.total_seconds()),
        "moved": int(moved) if moved.isascii() and moved.isdigit() and len(moved) < 6 else None,
        "error": error,
        "max_reassign": MAX_REASSIGN,
    }
    return render(request, "monitor/monitor.html", context, status_code=status)


@requires(PANEL_ACCESS, MONITOR_VIEW)
async def monitor_page(request: Request) -> Response:
    try:
        filters = parse_filters(request.query_params)
    except BadFilter as bad:
        return await _page(request, MonitorFilters(), error=bad.key, status=400)
    return await _page(request, filters)


@requires(PANEL_ACCESS, MONITOR_VIEW)
async def monitor_events(request: Request) -> Response:
    try:
        filters = parse_filters(request.query_params)
    except BadFilter as bad:
        return error_response(request, 400, bad.key)
    bus = panel(request).bus
    if bus is None:
        return error_response(request, 503)
    return stream_response(request, view_of(request, filters), bus)


def _conversation_ids(values: list[Any]) -> list[int]:
    ids: list[int] = []
    for value in values:
        if not isinstance(value, str) or not ACCOUNT_ID.match(value.strip()):
            raise BadFilter(N_("Choose conversations from the list."))
        ids.append(int(value.strip()))
    if not ids:
        raise BadFilter(N_("Choose at least one conversation."))
    if len(ids) > MAX_REASSIGN:
        raise BadFilter(N_("At most 500 conversations at a time."))
    return ids


@requires(PANEL_ACCESS, MONITOR_VIEW)
async def reassign(request: Request) -> Response:
    form = await request.form()
    target = form.get("operator")
    # the ticked boxes, one field each; the page's script sends them joined in one field instead
    # (a form carries at most ``max_form_fields`` fields)
    joined = form.get("conversations")
    picked = [
        *form.getlist("conversation"),
        *(joined.split(",") if isinstance(joined, str) and joined else []),
    ]
    try:
        ids = _conversation_ids(picked)
        if not isinstance(target, str) or not (target == QUEUE or _is_account_id(target)):
            raise BadFilter(N_("Choose an operator or the queue."))
    except BadFilter as bad:
        return await _page(request, MonitorFilters(), error=bad.key, status=400)
    operator_id = None if target == QUEUE else int(target)
    back = form.get("back")
    try:  # the page's filters, kept across the reassignment (dropped when not valid)
        filters = parse_filters(QueryParams(back if isinstance(back, str) else ""))
    except BadFilter:
        filters = MonitorFilters()
    record = entry_for(request, "conversation.reassign")
    try:
        moved = await assignment_service(panel(request)).reassign(ids, operator_id, audit=record)
    except ReassignRefused as refused:
        return await _page(request, filters, error=REFUSALS[refused.reason], status=409)
    kept = {name: value for name, value in _query(filters).items() if value}
    return RedirectResponse(f"/admin/monitor?{urlencode({**kept, 'moved': len(moved)})}", status_code=303)


routes = [
    Route("/admin/monitor", monitor_page, methods=["GET"], name="monitor.page"),
    Route("/admin/monitor/events", monitor_events, methods=["GET"], name="monitor.events"),
    Route("/admin/monitor/reassign", reassign, methods=["POST"], name="monitor.reassign"),
]
