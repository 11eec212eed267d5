"""The services plugin's pages: /admin/diversion (the call-centre switch of each configured service)
and /admin/sessions (session reset of a pasted or uploaded list of clients)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.diversion import announce_diversion, diversion_of
from gatewayd.masking import MASK
from gatewayd.session_reset import (
    MAX_LINES,
    MAX_UPLOAD_BYTES,
    Line,
    LineKind,
    find_client,
    read_lines,
    reset_session,
)
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.services import service_settings, settings_version, switch_diversion
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.audit import audit
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db, db_read, error_response, panel, render, require_user
from plugins.desk.permissions import OPERATOR_SEE_MSISDN
from plugins.desk.service import assignment_service
from plugins.services.permissions import CLIENTS_SESSION_RESET, SERVICES_DIVERSION
from translations import N_

DIVERSION_PATH = "/admin/diversion"
SESSIONS_PATH = "/admin/sessions"
#: Characters of a pasted list at most (a 1 MiB file's worth).
MAX_PASTE = MAX_UPLOAD_BYTES


@dataclass(frozen=True, slots=True)
class ServiceRow:
    name: str
    short_code: str
    keyword: str | None
    diverted: bool
    switched: bool  # False: the configuration's value, nobody switched it yet
    since: datetime | None
    by: str | None
    waiting: int


async def _waiting_by_service(request: Request) -> dict[str, int]:
    async with db_read(request) as session:
        rows = await session.execute(
            select(Conversation.service, func.count())
            .where(
                Conversation.status == ConversationStatus.WAITING, Conversation.assigned_operator_id.is_(None)
            )
            .group_by(Conversation.service)
        )
        return {str(service): int(count) for service, count in rows if service is not None}


async def _service_rows(request: Request) -> list[ServiceRow]:
    services = panel(request).settings.outbox.services
    async with db_read(request) as session:
        switched = await service_settings(session)
    waiting = await _waiting_by_service(request)
    diverted = diversion_of({item.name: item.callcentre for item in services}, switched).services
    rows = []
    for item in services:
        row = switched.get(item.name)
        rows.append(
            ServiceRow(
                name=item.name,
                short_code=item.short_code,
                keyword=item.keyword,
                diverted=item.name in diverted,
                switched=row is not None,
                since=row.changed_at if row is not None else None,
                by=row.changed_by if row is not None else None,
                waiting=waiting.get(item.name, 0),
            )
        )
    return rows


def _pool(request: Request) -> str:
    return assignment_service(panel(request)).policy.callcentre_pool


@requires(PANEL_ACCESS, SERVICES_DIVERSION)
async def diversion_page(request: Request) -> Response:
    notice = request.query_params.get("notice")
    context = {
        "title": N_("Call-centre diversion"),
        "rows": await _service_rows(request),
        "pool": _pool(request),
        "notice": notice if notice in ("on", "off") else None,
        "switched": request.query_params.get("service", "")[:32],
    }
    return render(request, "services/diversion.html", context)


@requires(PANEL_ACCESS, SERVICES_DIVERSION)
async def switch(request: Request) -> Response:
    user = require_user(request)
    form = await request.form()
    name = _field(form, "service", 64)
    wanted = _field(form, "diverted", 8)
    services = {item.name: item for item in panel(request).settings.outbox.services}
    if name not in services:
        return error_response(request, 404, N_("There is no such service."))
    if wanted not in ("on", "off"):
        return error_response(request, 400, N_("Choose whether the service is diverted."))
    diverted = wanted == "on"
    async with db(request) as session, session.begin():
        switched = await switch_diversion(
            session, name, diverted, utcnow(), by=user.username, by_id=user.account_id
        )
        before = switched if switched is not None else services[name].callcentre
        await audit(
            session,
            request,
            "service.diversion",
            subject=f"service:{name}",
            details={"before": {"diverted": before}, "after": {"diverted": diverted}},
        )
        version = await settings_version(session)
    service = assignment_service(panel(request))
    await service.refresh_diversion()  # this panel at once; others (and the daemon) on the event
    await announce_diversion(panel(request).bus, name, diverted, version)
    await service.assign()
    return RedirectResponse(f"{DIVERSION_PATH}?notice={wanted}&service={name}", status_code=303)


# --- session reset -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportLine:
    number: int
    text: str  # as written, digits masked for a user who may not see numbers
    outcome: str  # reset / unknown / invalid
    reason: str  # English, marked for the catalogue
    detail: str = ""  # the number reader's own words (English), for an invalid number
    client_id: str | None = None
    closed: int = 0


OUTCOMES = ("reset", "unknown", "invalid")
OUTCOME_LABELS = {"reset": N_("Reset"), "unknown": N_("Unknown"), "invalid": N_("Invalid")}
REASONS = {
    "reset": N_("Session reset."),
    "reset_closed": N_("Session reset; the open conversation was closed."),
    "again": N_("Same client as an earlier line: reset once."),
    "unknown": N_("No client with this number or client ID."),
    "invalid": N_("Not a valid phone number or client ID."),
}


def _field(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _masked(text: str, show_msisdn: bool) -> str:
    if show_msisdn:
        return text
    return "".join(MASK if char.isdigit() else char for char in text)


def _countries(request: Request) -> list[str]:
    countries: list[str] = []
    for carrier in panel(request).settings.outbox.carriers:
        if carrier.country not in countries:
            countries.append(carrier.country)
    return countries or ["ES"]


def _sessions_page(request: Request, status: int = 200, **context: Any) -> Response:
    countries = _countries(request)
    values = {
        "title": N_("Session reset"),
        "countries": countries,
        "country": context.pop("country", countries[0]),
        "max_lines": MAX_LINES,
        "outcome_labels": OUTCOME_LABELS,
        "report": None,
        "error": None,
        "pasted": "",
        **context,
    }
    return render(request, "services/sessions.html", values, status_code=status)


@requires(PANEL_ACCESS, CLIENTS_SESSION_RESET)
async def sessions_page(request: Request) -> Response:
    return _sessions_page(request)


async def _list_text(form: FormData) -> str | None:
    """The uploaded file's text when one was sent, else the pasted text; None when the file is not
    UTF-8 (or Latin-1) text or is too large."""
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES or b"\x00" in data:
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    pasted = form.get("numbers")
    return pasted if isinstance(pasted, str) else ""


@requires(PANEL_ACCESS, CLIENTS_SESSION_RESET)
async def reset(request: Request) -> Response:
    form = await request.form(max_files=1, max_part_size=MAX_UPLOAD_BYTES)
    try:
        return await _reset(request, form)
    finally:
        await form.close()  # the uploaded file's spool


async def _reset(request: Request, form: FormData) -> Response:
    user = require_user(request)
    countries = _countries(request)
    country = _field(form, "country", 2).upper() or countries[0]
    if country not in countries:
        return _sessions_page(request, 400, error=N_("Choose one of the countries listed."))
    text = await _list_text(form)
    pasted = form.get("numbers")
    shown = pasted[:MAX_PASTE] if isinstance(pasted, str) else ""
    if text is None:
        message = N_("The file must be a text or CSV file of at most 1 MiB.")
        return _sessions_page(request, 400, error=message, country=country, pasted=shown)
    if len(text) > MAX_PASTE:
        message = N_("The list is too long: at most 1 MiB.")
        return _sessions_page(request, 400, error=message, country=country, pasted="")
    try:
        lines = read_lines(text, country)
    except ValueError:
        message = N_("The list is too long: at most 10,000 lines.")
        return _sessions_page(request, 400, error=message, country=country, pasted=shown)
    if not lines:
        message = N_("Paste at least one phone number or client ID, or choose a file.")
        return _sessions_page(request, 400, error=message, country=country, pasted=shown)
    show = user.has(OPERATOR_SEE_MSISDN)

    def shown_id(line: Line, client: Subscriber) -> str:
        """The client's id, but not on a number's line for a user who may not see numbers: the id
        would tell them whose number it is."""
        return client.client_id if show or line.kind is LineKind.CLIENT_ID else ""

    report: list[ReportLine] = []
    now = utcnow()
    async with db(request) as session, session.begin():
        done: dict[int, int] = {}  # subscriber id -> line it was reset at
        records: list[tuple[str, dict[str, object]]] = []
        for line in lines:
            written = line.text if line.kind is LineKind.CLIENT_ID else _masked(line.text, show)
            if line.kind is LineKind.INVALID:
                report.append(ReportLine(line.number, written, "invalid", REASONS["invalid"], line.problem))
                continue
            client = await find_client(session, line)
            if client is None:
                report.append(ReportLine(line.number, written, "unknown", REASONS["unknown"]))
                continue
            if client.id in done:
                report.append(
                    ReportLine(line.number, written, "reset", REASONS["again"], "", shown_id(line, client))
                )
                continue
            before = client.session_reset_at
            closed = await reset_session(session, client.id, now)
            done[client.id] = line.number
            records.append(
                (
                    f"client:{client.client_id}",
                    {
                        "before": {"session_reset_at": before.isoformat() if before else None},
                        "after": {"session_reset_at": now.isoformat(), "closed_conversations": closed},
                    },
                )
            )
            reason = REASONS["reset_closed"] if closed else REASONS["reset"]
            report.append(
                ReportLine(line.number, written, "reset", reason, "", shown_id(line, client), len(closed))
            )
        # The audit head last, once every row this transaction locks is locked (the desk's close and
        # the MO pipeline take rows first too): no deadlock, and the head is held only to the commit.
        for subject, details in records:
            await audit(session, request, "client.session_reset", subject=subject, details=details)
    if any(line.closed for line in report):
        await assignment_service(panel(request)).assign()  # the closed conversations freed slots
    counts = {outcome: sum(1 for line in report if line.outcome == outcome) for outcome in OUTCOMES}
    return _sessions_page(request, report=report, counts=counts, country=country)


routes = [
    Route(DIVERSION_PATH, diversion_page, methods=["GET"], name="services.diversion"),
    Route(DIVERSION_PATH, switch, methods=["POST"], name="services.diversion.switch"),
    Route(SESSIONS_PATH, sessions_page, methods=["GET"], name="services.sessions"),
    Route(SESSIONS_PATH, reset, methods=["POST"], name="services.sessions.reset"),
]
