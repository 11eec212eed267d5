"""Client control: ban / unban by client ID (one or a pasted list, with a per-line report) and the
client's card (state, counts, and the history of bans and opt-outs from the audit trail).

A ban is :func:`gatewayd.client_control.change_bans` (shared with the API): the rows, in the same
transaction the audit record of each change and the withdrawal of the client's conversations from
their operators (published after the commit). What a ban then stops is
decided where it always is: assignment skips the client (``gatewayd.store.repo_assignment``) and the
recipient rule refuses their MTs (``gatewayd.store.mt.recipients.refusal``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatewayd.assignment import publish_assignments
from gatewayd.client_control import change_bans as apply_bans
from gatewayd.store.audit import AuditRecord, records_about
from gatewayd.store.base import utcnow
from gatewayd.store.repo_subscribers import (
    client_id_of,
    get_subscriber_by_client_id,
    get_subscriber_by_msisdn,
)
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.audit import entry_for
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db, db_read, panel, render, require_user
from plugins.clients.permissions import CLIENTS_CONTROL
from plugins.desk.permissions import OPERATOR_SEE_MSISDN, OPERATOR_SEE_OTHERS
from translations import N_

#: Lines of a pasted list at most.
MAX_LINES = 1000
#: A ban's reason at most (``subscribers.banned_reason``).
MAX_REASON = 255
#: How much of a refused line the report repeats.
SHOWN_LINE = 40
#: The actions the card's history lists.
HISTORY_ACTIONS = ("client.ban", "client.unban", "client.opt_out", "client.opt_in")

PHONE = re.compile(r"^\+?[0-9]{6,15}$")

BANNED, UNBANNED, ALREADY, UNKNOWN, INVALID = "banned", "unbanned", "already", "unknown", "invalid"
OUTCOMES = {
    BANNED: N_("banned"),
    UNBANNED: N_("unbanned"),
    ALREADY: N_("already in that state"),
    UNKNOWN: N_("unknown client ID"),
    INVALID: N_("not a client ID"),
}
HISTORY_LABELS = {
    "client.ban": N_("Banned"),
    "client.unban": N_("Unbanned"),
    "client.opt_out": N_("Opted out (BAJA)"),
    "client.opt_in": N_("Opted back in (ALTA)"),
}


class Rejected(Exception):
    """A form the page refuses; ``key`` is the message shown."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class ReportLine:
    number: int
    text: str
    outcome: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    record: AuditRecord
    label: str
    reason: str | None


def pasted_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are not blank."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _form_text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _history(records: list[AuditRecord]) -> list[HistoryEntry]:
    entries = []
    for record in records:
        after = record.details.get("after")
        before = record.details.get("before")
        reason = None
        if record.action == "client.ban" and isinstance(after, dict):
            reason = after.get("reason")
        elif record.action == "client.unban" and isinstance(before, dict):
            reason = before.get("reason")
        entries.append(
            HistoryEntry(
                record, HISTORY_LABELS.get(record.action, record.action), str(reason) if reason else None
            )
        )
    return entries


async def _card(request: Request, query: str) -> tuple[dict[str, Any], int]:
    """The card's context for a look-up (client ID, or a number for those who may see numbers)."""
    user = require_user(request)
    show_msisdn = user.has(OPERATOR_SEE_MSISDN)
    wanted = query.strip()
    if not wanted:
        return {}, 200
    client_id = client_id_of(wanted)
    number = wanted.replace(" ", "")
    if client_id is None and not (show_msisdn and PHONE.match(number)):
        key = (
            N_("Enter a client ID (C and 8 letters or digits) or a phone number.")
            if show_msisdn
            else N_("Enter a client ID (C and 8 letters or digits).")
        )
        return {"lookup_error": key}, 400
    async with db_read(request) as session:
        subscriber: Subscriber | None
        if client_id is not None:
            subscriber = await get_subscriber_by_client_id(session, client_id)
        else:
            subscriber = await get_subscriber_by_msisdn(session, number.lstrip("+"))
        if subscriber is None:
            return {"lookup_error": N_("No client found.")}, 404
        records = await records_about(session, f"client:{subscriber.client_id}", actions=HISTORY_ACTIONS)
    return {"card": subscriber, "history": _history(records), "show_msisdn": show_msisdn}, 200


def _page(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    user = require_user(request)
    base = {
        "title": N_("Client control"),
        "outcomes": OUTCOMES,
        "max_lines": MAX_LINES,
        "max_reason": MAX_REASON,
        "may_search_numbers": user.has(OPERATOR_SEE_MSISDN),
        "may_read_history": user.has(OPERATOR_SEE_OTHERS),
        "query": "",
        "ids": "",
        "reason": "",
        "action": "ban",
        "lookup_error": None,
        "card": None,
        "history": [],
        "show_msisdn": False,
        "error": None,
        "report": None,
        "counts": {},
    }
    return render(request, "clients/clients.html", {**base, **context}, status_code=status)


@requires(PANEL_ACCESS, CLIENTS_CONTROL)
async def clients_page(request: Request) -> Response:
    query = request.query_params.get("q", "")[:64]
    card, status = await _card(request, query)
    return _page(request, {"query": query, **card}, status)


def _parse(action: str, ids: str, reason: str) -> tuple[list[tuple[int, str]], str | None]:
    """The pasted lines and the reason (None: unban), or :class:`Rejected`."""
    if action not in ("ban", "unban"):
        raise Rejected(N_("Choose ban or unban."))
    lines = pasted_lines(ids)
    if not lines:
        raise Rejected(N_("Enter at least one client ID."))
    if len(lines) > MAX_LINES:
        raise Rejected(N_("At most 1,000 client IDs at a time."))
    if action == "unban":
        return lines, None
    reason = reason.strip()
    if not reason:
        raise Rejected(N_("A ban needs a reason."))
    if len(reason) > MAX_REASON:
        raise Rejected(N_("The reason may be at most 255 characters long."))
    return lines, reason


@requires(PANEL_ACCESS, CLIENTS_CONTROL)
async def change_bans(request: Request) -> Response:
    form = await request.form()
    action = _form_text(form.get("action"), 8)
    # one more line than allowed, of the longest a line may usefully be, tells "too many" apart
    ids = _form_text(form.get("ids"), (MAX_LINES + 1) * 64)
    reason = _form_text(form.get("reason"), MAX_REASON * 4)
    kept = {"action": action if action in ("ban", "unban") else "ban", "ids": ids, "reason": reason}
    try:
        lines, ban_reason = _parse(action, ids, reason)
    except Rejected as refused:
        return _page(request, {**kept, "error": refused.key}, 400)
    named = [(number, text, client_id_of(text)) for number, text in lines]
    now = utcnow()
    async with db(request) as session, session.begin():
        changes = await apply_bans(
            session,
            [client_id for _, _, client_id in named if client_id],
            reason=ban_reason,
            now=now,
            record=lambda action, subject, details: entry_for(
                request, action, subject=subject, details=details
            ),
        )
    outcome, withdrawn = changes.outcome, changes.withdrawn
    await publish_assignments(panel(request).bus, withdrawn)
    report: list[ReportLine] = []
    reported: set[str] = set()
    for number, text, client_id in named:
        if client_id is None:
            result = INVALID
        elif client_id in outcome.unknown:
            result = UNKNOWN
        elif client_id in outcome.changed and client_id not in reported:
            result = BANNED if ban_reason is not None else UNBANNED
        else:
            result = ALREADY
        if client_id is not None:
            reported.add(client_id)
        report.append(ReportLine(number, text[:SHOWN_LINE], result))
    counts = {key: sum(1 for line in report if line.outcome == key) for key in OUTCOMES}
    context = {**kept, "ids": "", "reason": "", "report": report, "counts": counts}
    return _page(request, context)


routes = [
    Route("/admin/clients", clients_page, methods=["GET"], name="clients.page"),
    Route("/admin/clients", change_bans, methods=["POST"], name="clients.change"),
]
