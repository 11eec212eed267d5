"""The audit trail's viewer: newest first, filtered, paged by record number; the same records as CSV;
and, on demand, the check of the whole hash chain (`gatewayd.store.audit.verify_audit`)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gatewayd.store.audit import (
    ACTION_LENGTH,
    ACTOR_LENGTH,
    SOURCE_LENGTH,
    SUBJECT_LENGTH,
    AuditCheck,
    AuditFilter,
    AuditRecord,
    audit_actions,
    audit_has,
    audit_page,
    verify_audit,
)
from panel.access import requires
from panel.audit import audit
from panel.auth.permissions import PANEL_ACCESS
from panel.i18n import format_datetime, zone_or_utc
from panel.runtime import PanelRuntime
from panel.web import db, db_read, error_response, panel, render, require_user, translate
from plugins.audit.labels import DETAIL_LABELS, NO, TIME_KEYS, YES, readable
from plugins.audit.permissions import AUDIT_VIEW
from translations import N_

#: Records per page on screen, and per query while a CSV export streams.
PAGE_SIZE = 100
CSV_PAGE_SIZE = 500
MAX_TEXT = 200
#: The filters a page or an export takes, by their query parameter, each with the longest value it takes.
FILTER_LIMITS = MappingProxyType(
    {
        "actor": ACTOR_LENGTH,
        "action": ACTION_LENGTH,
        "subject": SUBJECT_LENGTH,
        "source": SOURCE_LENGTH,
        "from": 10,
        "to": 10,
        "q": MAX_TEXT,
    }
)
_ACTION = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: A spreadsheet takes a cell starting with one of these as a formula: such cells get a leading "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ARROW = "\u2192"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class BadFilter(Exception):
    """A filter the viewer refuses; ``key`` is the message shown (English, marked with N_), ``field``
    the filter it is about (a key of FILTER_LIMITS; None: the page asked for)."""

    def __init__(self, key: str, field: str | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.field = field


@dataclass(frozen=True, slots=True)
class Query:
    """A reader's request: the filters as typed (to show them back and to build links) and as a
    store filter, and the page asked for."""

    values: dict[str, str]
    wanted: AuditFilter
    before: int | None = None
    after: int | None = None


#: The years a date filter may name.
FIRST_YEAR, LAST_YEAR = 2000, 9998


def _text(params: QueryParams, name: str, limit: int) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        raise BadFilter(N_("A filter value is too long."), name)
    return value


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadFilter(N_("Dates must be written as YYYY-MM-DD."), name) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:  # the day after the last must still be a date
        raise BadFilter(N_("Dates must be written as YYYY-MM-DD."), name)
    return day


def _seq(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # int() takes "²" as no digit
        raise BadFilter(N_("The page asked for is not valid."))
    return int(value)


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def parse_query(params: QueryParams, zone: ZoneInfo) -> Query:
    """The filters and page of a request, dates read as days in the reader's time zone (``to`` is
    inclusive). Raises `BadFilter`."""
    values = {name: _text(params, name, limit) for name, limit in FILTER_LIMITS.items()}
    if values["action"] and not _ACTION.fullmatch(values["action"]):
        raise BadFilter(N_("There is no such action."), "action")
    first, last = _day(values["from"], "from"), _day(values["to"], "to")
    if first is not None and last is not None and first > last:
        raise BadFilter(N_("The start date is after the end date."), "to")
    wanted = AuditFilter(
        actor=values["actor"] or None,
        action=values["action"] or None,
        subject=values["subject"] or None,
        source=values["source"] or None,
        since=_start_of(first, zone) if first is not None else None,
        until=_start_of(last + timedelta(days=1), zone) if last is not None else None,
        text=values["q"] or None,
    )
    before, after = _seq(params.get("before")), _seq(params.get("after"))
    if before is not None and after is not None:
        raise BadFilter(N_("The page asked for is not valid."))
    return Query({name: value for name, value in values.items() if value}, wanted, before, after)


def typed_filters(params: QueryParams) -> dict[str, str]:
    """The filters as the reader typed them, to fill the form again when one is refused; each cut at
    the longest value its field takes (a refused value of many kilobytes is not sent back whole)."""
    return {name: params[name][:limit] for name, limit in FILTER_LIMITS.items() if params.get(name)}


def date_input(value: str) -> str:
    """The type of a date filter's input: "date" (the browser's calendar), or "text" for a value a
    date input would blank, so that what was typed shows beside its error."""
    try:
        date.fromisoformat(value)
    except ValueError:
        return "text" if value else "date"
    return "date" if _DATE.fullmatch(value) else "text"


def _link(path: str, values: Mapping[str, str], **page: int) -> str:
    query = urlencode({**values, **{name: str(seq) for name, seq in page.items()}})
    return f"{path}?{query}" if query else path


@dataclass(frozen=True, slots=True)
class Shown:
    """How the viewer words a record's details: ``label`` names a key of the details in the reader's
    language, ``when`` writes an instant in the reader's time zone, ``yes``/``no`` a true or false."""

    label: Callable[[str], str]
    when: Callable[[datetime], str]
    yes: str = "yes"
    no: str = "no"

    def value(self, value: Any, key: str = "") -> str:
        if value is None:
            return "\u2014"
        if isinstance(value, bool):
            return self.yes if value else self.no
        if isinstance(value, str):
            return self._instant(value) if key in TIME_KEYS else value
        if isinstance(value, list):
            return ", ".join(self.value(item, key) for item in value) or "\u2014"
        if isinstance(value, dict):
            if key in TIME_KEYS:  # message id -> when: the ids as they are
                parts = [f"{name}: {self.value(item, key)}" for name, item in value.items()]
            else:
                parts = [f"{self.label(name)}: {self.value(item, name)}" for name, item in value.items()]
            return "; ".join(parts) or "\u2014"
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    def _instant(self, text: str) -> str:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
        return self.when(moment) if moment.tzinfo is not None else text


def describe(details: Mapping[str, Any], shown: Shown) -> list[tuple[str, str]]:
    """A record's details as (label, text) lines: each field changed as ``before -> after``, then the
    other details; keys named by ``shown.label``, instants in the reader's time zone."""
    lines: list[tuple[str, str]] = []
    before, after = details.get("before"), details.get("after")
    if isinstance(before, dict) or isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        new = after if isinstance(after, dict) else {}
        for name in sorted({*old, *new}):
            label = shown.label(name)
            if name in old and name in new:
                lines.append(
                    (label, f"{shown.value(old[name], name)} {ARROW} {shown.value(new[name], name)}")
                )
            elif name in new:
                lines.append((label, f"{ARROW} {shown.value(new[name], name)}"))
            else:
                lines.append((label, f"{shown.value(old[name], name)} {ARROW}"))
    elif "before" in details or "after" in details:
        lines.append(("", f"{shown.value(before)} {ARROW} {shown.value(after)}"))
    lines.extend(
        (shown.label(name), shown.value(value, name))
        for name, value in details.items()
        if name not in ("before", "after")
    )
    return lines


def _row(record: AuditRecord, shown: Shown) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "at": record.at,
        "actor": record.actor,
        "source": record.source or "",
        "action": record.action,
        "subject": record.subject or "",
        "details": describe(record.details, shown),
    }


def _shown(request: Request) -> Shown:
    """The reader's wording: labels in their language, instants as every panel page shows them
    (`panel.i18n.format_datetime`, the templates' ``localtime``) in their time zone."""
    timezone = require_user(request).timezone

    def label(key: str) -> str:
        known = DETAIL_LABELS.get(key)
        return translate(request, known) if known is not None else readable(key)

    def when(moment: datetime) -> str:
        return format_datetime(moment, timezone)

    return Shown(label, when, translate(request, YES), translate(request, NO))


def _zone(request: Request) -> ZoneInfo:
    return zone_or_utc(require_user(request).timezone)


async def _page(
    request: Request,
    query: Query | None,
    *,
    check: AuditCheck | None = None,
    refused: BadFilter | None = None,
    typed: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The trail's page; when a filter was ``refused``, the form as ``typed`` and the message beside
    the field it is about, and no records."""
    rows: list[dict[str, Any]] = []
    newer = older = None
    values = query.values if query is not None else dict(typed or {})
    async with db_read(request) as session:
        actions = await audit_actions(session)
        if query is not None:
            records = await audit_page(
                session, query.wanted, before=query.before, after=query.after, limit=PAGE_SIZE
            )
            shown = _shown(request)
            rows = [_row(record, shown) for record in records]
            if records:
                top, bottom = records[0].seq, records[-1].seq
                if await audit_has(session, query.wanted, below=None, above=top):
                    newer = _link("/admin/audit", values, after=top)
                if await audit_has(session, query.wanted, below=bottom, above=None):
                    older = _link("/admin/audit", values, before=bottom)
    context = {
        "values": values,
        "actions": actions,
        "rows": rows,
        "newer": newer,
        "older": older,
        "newest": _link("/admin/audit", values) if newer else None,
        "csv_url": _link("/admin/audit.csv", values) if refused is None else None,
        "check": check,
        "error": translate(request, refused.key) if refused is not None else None,
        "error_field": refused.field if refused is not None else None,
        "date_inputs": {name: date_input(values.get(name, "")) for name in ("from", "to")},
    }
    return render(request, "audit/trail.html", context, status_code=status_code)


@requires(PANEL_ACCESS, AUDIT_VIEW)
async def trail(request: Request) -> Response:
    try:
        query = parse_query(request.query_params, _zone(request))
    except BadFilter as bad:
        typed = typed_filters(request.query_params)
        return await _page(request, None, refused=bad, typed=typed, status_code=400)
    return await _page(request, query)


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_line(cells: list[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue()


async def _csv_lines(
    runtime: PanelRuntime, wanted: AuditFilter, zone: ZoneInfo, header: list[object]
) -> AsyncIterator[str]:
    """The BOM (Excel then reads UTF-8), the header, then the records newest first, one keyset page
    per short read session."""
    yield "\ufeff" + _csv_line(header)
    before: int | None = None
    while True:
        async with runtime.readers() as session:
            records = await audit_page(session, wanted, before=before, limit=CSV_PAGE_SIZE)
        for record in records:
            details = json.dumps(record.details, ensure_ascii=False, sort_keys=True)
            at = record.at.astimezone(zone).strftime(TIME_FORMAT)
            yield _csv_line(
                [
                    record.seq,
                    at,
                    record.actor,
                    record.actor_id,
                    record.source,
                    record.action,
                    record.subject,
                    details,
                    record.hash,
                ]
            )
        if len(records) < CSV_PAGE_SIZE:
            return
        before = records[-1].seq


CSV_HEADER = (
    N_("Number"),
    N_("Time"),
    N_("Actor"),
    N_("Actor's account"),
    N_("Source"),
    N_("Action"),
    N_("Subject"),
    N_("Details"),
    N_("Hash"),
)


@requires(PANEL_ACCESS, AUDIT_VIEW)
async def export(request: Request) -> Response:
    zone = _zone(request)
    try:
        query = parse_query(request.query_params, zone)
    except BadFilter as bad:
        return error_response(request, 400, bad.key)
    async with db(request) as session, session.begin():  # the export itself is on the record
        await audit(session, request, "audit.export", details={"filters": query.values})
    header: list[object] = [translate(request, name) for name in CSV_HEADER]
    stamp = datetime.now(zone).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        _csv_lines(panel(request), query.wanted, zone, header),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


@requires(PANEL_ACCESS, AUDIT_VIEW)
async def verify(request: Request) -> Response:
    """Checks the whole chain (it reads every record: on demand only), records the check, shows it."""
    async with db_read(request) as session:
        check = await verify_audit(session)
    details = {"records": check.records, "intact": check.intact, "bad_seq": check.bad_seq}
    async with db(request) as session, session.begin():
        await audit(session, request, "audit.verify", details=details)
    return await _page(request, parse_query(QueryParams(), _zone(request)), check=check)


routes = [
    Route("/admin/audit", trail, methods=["GET"], name="audit.trail"),
    Route("/admin/audit.csv", export, methods=["GET"], name="audit.export"),
    Route("/admin/audit/verify", verify, methods=["POST"], name="audit.verify"),
]
