"""The reports' pages (manual 1.4), for those holding ``reports.view``; each reads the rollups for a
date range in the viewer's time zone and exports its tables as CSV (``?format=csv``):

* ``/admin/reports``: MOs and MTs per day (charts) and the hour x weekday heat map;
* ``/admin/reports/operators``: per operator, conversations handled, MOs answered, MTs sent, first
  response median and p90, delivered %;
* ``/admin/reports/traffic?by=service|short_code|carrier|country``: MOs, MTs, delivered / failed /
  refused, opt-outs, new clients;
* ``/admin/reports/clients?q=``: one client's whole history of MOs and MTs, paginated;
* ``/admin/reports/spend`` (only where a service bills its clients): per billed service and month of
  its zone, the clients billed, the spend (total, average and most per client) and the clients held
  now; and the clients who spent most (``?table=clients`` exports them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gatewayd.store.base import utcnow
from gatewayd.store.repo_subscribers import (
    client_id_of,
    get_subscriber_by_client_id,
    get_subscriber_by_msisdn,
)
from gatewayd.store.subscribers import Subscriber
from panel.access import requires
from panel.auth.permissions import PANEL_ACCESS
from panel.i18n import zone_or_utc
from panel.web import db_read, error_response, language, panel, render, require_user
from plugins.desk.permissions import OPERATOR_SEE_MSISDN
from plugins.reports.charts import heat_map, per_day_chart
from plugins.reports.columns import COLUMNS
from plugins.reports.columns import CONTEXT as COLUMN_CONTEXT
from plugins.reports.export import csv_response
from plugins.reports.figures import (
    DIMENSIONS,
    ClientSpend,
    HistoryLine,
    OperatorRow,
    ServiceSpend,
    client_history,
    hourly_totals,
    operators,
    per_day,
    per_weekday_hour,
    spend_by_service,
    top_clients,
    traffic_by,
)
from plugins.reports.figures import (
    Response as FirstResponse,
)
from plugins.reports.period import Period, PeriodError, RangeForm, parse_period
from plugins.reports.permissions import REPORTS_VIEW
from routing.premium import PremiumState, Terms, format_money
from translations import N_

BASE = "/admin/reports"
HISTORY_PAGE = 50
#: A client's history as CSV: at most this many lines (newest first).
HISTORY_EXPORT_LIMIT = 100_000
MAX_PAGE = 10_000
PHONE = re.compile(r"^\+?[0-9]{6,15}$")

DIMENSION_TITLES = {
    "service": N_("Service"),
    "short_code": N_("Short code"),
    "carrier": N_("Carrier"),
    "country": N_("Country"),
}
#: An MT's status as the history shows it.
STATUS_LABELS = {
    "queued": N_("queued"),
    "sending": N_("sending"),
    "accepted": N_("accepted"),
    "delivered": N_("delivered"),
    "failed": N_("failed"),
    "expired": N_("expired"),
    "refused": N_("refused"),
    "cancelled": N_("cancelled"),
}
#: A billed client's standing, as the spend report shows it.
SPEND_STATES = {
    PremiumState.NORMAL.value: N_("billed"),
    PremiumState.PAUSED.value: N_("paused for confirmation"),
    PremiumState.CAPPED.value: N_("capped"),
}
#: Each report's tab and the title of its page.
TITLES = {
    "overview": N_("Reports"),
    "operators": N_("Reports: operators"),
    "traffic": N_("Reports: traffic"),
    "clients": N_("Reports: client history"),
    "spend": N_("Reports: spend"),
}
BAD_DIMENSION = N_("Group the traffic by service, short code, carrier or country.")
BAD_PAGE = N_("The page number is not valid.")


def _zone(request: Request) -> ZoneInfo:
    return zone_or_utc(require_user(request).timezone)


def _period(request: Request) -> Period:
    zone = _zone(request)
    return parse_period(request.query_params, utcnow().astimezone(zone).date(), zone)


Page = Callable[[Request, Period], Awaitable[Response]]


def _with_period(tab: str) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    """The page of ``tab`` gets the range its query asks for. A range it cannot report is a 400: the
    report's page with the range forms as they were filled in and the reason under the fields at fault
    (an export asked for such a range: the reason alone). The spend tab of a deployment that bills
    nobody does not exist: a 404 whatever the format and the dates."""

    def decorate(page: Page) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(page)
        async def ranged(request: Request) -> Response:
            if tab == "spend" and not _billing(request):
                return error_response(request, 404)
            try:
                period = _period(request)
            except PeriodError as error:
                if _wants_csv(request):
                    return error_response(request, 400, error.message)
                return _refused(request, tab, RangeForm.refused(request.query_params, error))
            return await page(request, period)

        return ranged

    return decorate


def _refused(request: Request, tab: str, form: RangeForm) -> Response:
    dimension = request.query_params.get("by", "")
    context = {
        "title": TITLES[tab],
        "bills": bool(_billing(request)),
        "tab": tab,
        "form": form,
        "period": None,
        "zone": str(_zone(request)),
        "range_query": "",
        "hidden": {"by": dimension} if tab == "traffic" and dimension in DIMENSIONS else {},
    }
    return render(request, "reports/refused.html", context, status_code=400)


def _wants_csv(request: Request) -> bool:
    return request.query_params.get("format") == "csv"


def _billing(request: Request) -> dict[str, Terms]:
    """The billed services' terms (none: the deployment bills nobody and has no spend report)."""
    return dict(panel(request).settings.outbox.premium.terms)


def _context(request: Request, period: Period, tab: str, **values: Any) -> dict[str, Any]:
    query = period.query()
    return {
        "title": TITLES[tab],
        "bills": bool(_billing(request)),
        "tab": tab,
        "form": RangeForm.of(period),
        "period": period,
        "zone": str(period.zone),
        "range_query": urlencode(query),
        "csv_query": urlencode({**query, **_kept(request), "format": "csv"}),
        **values,
    }


def _kept(request: Request) -> dict[str, str]:
    """The page's own choices (grouping, table) that an export link repeats."""
    return {name: request.query_params[name] for name in ("by", "table", "q") if name in request.query_params}


def _csv(
    request: Request, filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> Response:
    """The export with its column names in the reader's language (the hours of the heat map, 00h to 23h,
    read the same in every language) and its data as it is."""
    catalog, lang = panel(request).catalog, language(request)
    names = [catalog.pgettext(lang, COLUMN_CONTEXT, name) if name in COLUMNS else name for name in header]
    return csv_response(filename, names, rows)


def _seconds(response: FirstResponse | None) -> str:
    """A percentile for the CSV: '<= 30' or '> 3600' seconds, '' without replies."""
    if response is None:
        return ""
    return f"<= {response.within}" if response.within is not None else f"> {response.over}"


@requires(PANEL_ACCESS, REPORTS_VIEW)
@_with_period("overview")
async def overview_page(request: Request, period: Period) -> Response:
    async with db_read(request) as session:
        totals = await hourly_totals(session, period.start, period.end)
    days = per_day(totals, period.days, period.zone)
    grid = per_weekday_hour(totals, period.zone)
    if _wants_csv(request):
        if request.query_params.get("table") == "heatmap":
            header = ["weekday", *(f"{hour:02d}h" for hour in range(24))]
            names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
            rows: list[list[object]] = [[names[n], *grid[n]] for n in range(7)]
            return _csv(request, f"reports-heatmap_{period.slug()}.csv", header, rows)
        return _csv(
            request,
            f"reports-per-day_{period.slug()}.csv",
            ["day", "mo", "mt"],
            [[day.isoformat(), mo, mt] for day, mo, mt in days],
        )
    context = _context(
        request,
        period,
        "overview",
        days=days,
        mo_chart=per_day_chart([(day, mo) for day, mo, _ in days]),
        mt_chart=per_day_chart([(day, mt) for day, _, mt in days]),
        heat=heat_map(grid),
        total_mo=sum(mo for _, mo, _ in days),
        total_mt=sum(mt for _, _, mt in days),
    )
    return render(request, "reports/overview.html", context)


@requires(PANEL_ACCESS, REPORTS_VIEW)
@_with_period("operators")
async def operators_page(request: Request, period: Period) -> Response:
    async with db_read(request) as session:
        rows = await operators(session, period.start, period.end)
    if _wants_csv(request):
        return _csv(request, f"reports-operators_{period.slug()}.csv", *_operator_table(rows))
    context = _context(request, period, "operators", rows=rows)
    return render(request, "reports/operators.html", context)


def _operator_table(rows: list[OperatorRow]) -> tuple[list[str], list[list[object]]]:
    header = [
        "operator",
        "conversations_handled",
        "mos_answered",
        "mts_sent",
        "first_response_median_s",
        "first_response_p90_s",
        "replies_timed",
        "mts_delivered",
        "delivered_percent",
    ]
    return header, [
        [
            row.name,
            row.conversations,
            row.mos_answered,
            row.mts_sent,
            _seconds(row.median),
            _seconds(row.p90),
            row.replies_timed,
            row.mts_delivered,
            "" if row.delivered_percent is None else row.delivered_percent,
        ]
        for row in rows
    ]


@requires(PANEL_ACCESS, REPORTS_VIEW)
@_with_period("traffic")
async def traffic_page(request: Request, period: Period) -> Response:
    dimension = request.query_params.get("by", "service")
    if dimension not in DIMENSIONS:
        return error_response(request, 400, BAD_DIMENSION)
    async with db_read(request) as session:
        rows = await traffic_by(session, dimension, period.start, period.end)
    if _wants_csv(request):
        header = [dimension, "mo", "mt", "delivered", "failed", "refused", "opt_outs", "new_clients"]
        table = [
            [row.name, row.mo, row.mt, row.delivered, row.failed, row.refused, row.opt_outs, row.new_clients]
            for row in rows
        ]
        return _csv(
            request, f"reports-traffic-by-{dimension.replace('_', '-')}_{period.slug()}.csv", header, table
        )
    context = _context(
        request,
        period,
        "traffic",
        rows=rows,
        dimension=dimension,
        dimensions=DIMENSION_TITLES,
    )
    return render(request, "reports/traffic.html", context)


async def _find_client(request: Request, wanted: str) -> tuple[Subscriber | None, str | None, int]:
    """The client a search names (client ID, or a number for those who may see numbers), or why not
    and the page's status."""
    may_search_numbers = require_user(request).has(OPERATOR_SEE_MSISDN)
    client_id = client_id_of(wanted)
    number = wanted.replace(" ", "")
    if client_id is None and not (may_search_numbers and PHONE.match(number)):
        if may_search_numbers:
            return None, N_("Enter a client ID (C and 8 letters or digits) or a phone number."), 400
        return None, N_("Enter a client ID (C and 8 letters or digits)."), 400
    async with db_read(request) as session:
        if client_id is not None:
            subscriber = await get_subscriber_by_client_id(session, client_id)
        else:
            subscriber = await get_subscriber_by_msisdn(session, number.lstrip("+"))
    if subscriber is None:
        return None, N_("No client found."), 404
    return subscriber, None, 200


@requires(PANEL_ACCESS, REPORTS_VIEW)
@_with_period("clients")
async def clients_page(request: Request, period: Period) -> Response:
    wanted = request.query_params.get("q", "").strip()[:64]
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        return error_response(request, 400, BAD_PAGE)
    if not 1 <= page <= MAX_PAGE:
        return error_response(request, 400, BAD_PAGE)
    subscriber, problem, status = await _find_client(request, wanted) if wanted else (None, None, 200)
    lines: list[HistoryLine] = []
    if subscriber is not None:
        async with db_read(request) as session:
            if _wants_csv(request):
                lines = await client_history(session, subscriber.id, limit=HISTORY_EXPORT_LIMIT)
            else:
                lines = await client_history(
                    session, subscriber.id, limit=HISTORY_PAGE + 1, offset=(page - 1) * HISTORY_PAGE
                )
    if _wants_csv(request) and subscriber is not None:
        zone = period.zone
        return _csv(
            request,
            f"reports-client-{subscriber.client_id}.csv",
            ["direction", "id", "at", "short_code", "carrier", "status", "text"],
            [
                [
                    line.direction,
                    line.message_id,
                    line.at.astimezone(zone).isoformat(timespec="seconds"),
                    line.short_code,
                    line.carrier,
                    line.status or "",
                    line.text,
                ]
                for line in lines
            ],
        )
    context = _context(
        request,
        period,
        "clients",
        query=wanted,
        may_search_numbers=require_user(request).has(OPERATOR_SEE_MSISDN),
        statuses=STATUS_LABELS,
        client=subscriber,
        problem=problem,
        lines=lines[:HISTORY_PAGE],
        page=page,
        more=len(lines) > HISTORY_PAGE,
        page_query=lambda n: urlencode({**period.query(), "q": wanted, "page": n}),
    )
    return render(request, "reports/clients.html", context, status_code=status)


@requires(PANEL_ACCESS, REPORTS_VIEW)
@_with_period("spend")
async def spend_page(request: Request, period: Period) -> Response:
    terms = _billing(request)  # not empty: a deployment that bills nobody has no spend tab (_with_period)
    now = utcnow()
    may_see_numbers = require_user(request).has(OPERATOR_SEE_MSISDN)
    table = request.query_params.get("table")
    async with db_read(request) as session:
        if _wants_csv(request) and table == "clients":
            clients = await top_clients(session, terms, period.start, period.end, now)
            name = f"reports-spend-clients_{period.slug()}.csv"
            return _csv(request, name, *_client_table(clients, may_see_numbers))
        services = await spend_by_service(session, terms, period.start, period.end, now)
        if _wants_csv(request):
            return _csv(request, f"reports-spend_{period.slug()}.csv", *_spend_table(services))
        clients = await top_clients(session, terms, period.start, period.end, now)
    context = _context(
        request,
        period,
        "spend",
        services=services,
        clients=clients,
        may_see_numbers=may_see_numbers,
        states=SPEND_STATES,
        zones=sorted({str(item.zone) for item in terms.values()}),
        services_csv_query=urlencode({**period.query(), "format": "csv"}),
        clients_csv_query=urlencode({**period.query(), "table": "clients", "format": "csv"}),
    )
    return render(request, "reports/spend.html", context)


def _spend_table(rows: list[ServiceSpend]) -> tuple[list[str], list[list[object]]]:
    header = ["service", "month", "currency", "clients_billed", "total", "average", "max", "paused", "capped"]
    return header, [
        [
            row.service,
            row.month,
            row.currency,
            row.clients,
            format_money(row.total),
            format_money(row.average),
            format_money(row.top),
            row.paused,
            row.capped,
        ]
        for row in rows
    ]


def _client_table(rows: list[ClientSpend], with_numbers: bool) -> tuple[list[str], list[list[object]]]:
    header = ["service", "client_id", *(["msisdn"] if with_numbers else []), "currency", "spend", "state"]
    return header, [
        [
            row.service,
            row.client_id,
            *([row.msisdn] if with_numbers else []),
            row.currency,
            format_money(row.total),
            row.state.value,
        ]
        for row in rows
    ]


routes = [
    Route(BASE, overview_page, methods=["GET"]),
    Route(f"{BASE}/operators", operators_page, methods=["GET"]),
    Route(f"{BASE}/traffic", traffic_page, methods=["GET"]),
    Route(f"{BASE}/clients", clients_page, methods=["GET"]),
    Route(f"{BASE}/spend", spend_page, methods=["GET"]),
]
