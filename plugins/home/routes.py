"""The start pages: `/` sends each account to the mode it may use; `/admin` shows today's figures (today
in the reader's time zone) and links into each section the reader may open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gatewayd.assignment import AssignmentPolicy
from gatewayd.store.repo_stats import DayFigures, day_figures
from panel.access import requires
from panel.auth.permissions import OPERATOR_MODE, PANEL_ACCESS
from panel.menu import MenuItem, Mode, menu_for
from panel.presence import session_idle
from panel.runtime import PanelRuntime
from panel.web import panel, render, require_user
from plugins.home.status import DAEMON_STATUS
from translations import N_

DASHBOARD_TITLE = {Mode.OPERATOR: N_("Operator's desk"), Mode.ADMIN: N_("Control panel")}
DASHBOARD_PATH = {Mode.OPERATOR: "/operator", Mode.ADMIN: "/admin"}


@requires()
async def start(request: Request) -> Response:
    user = require_user(request)
    if user.has(PANEL_ACCESS):
        return RedirectResponse("/admin", status_code=303)
    if user.has(OPERATOR_MODE):
        return RedirectResponse("/operator", status_code=303)
    return render(request, "home/dashboard.html", {"title": N_("Start"), "items": (), "figures": ()})


#: Where each figure leads, when the reader may open that section (its menu item is theirs).
FIGURE_LINKS = {
    "mo": ("/admin/monitor",),
    "mt": ("/admin/monitor",),
    "delivered": ("/admin/monitor",),
    "waiting": ("/admin/monitor",),
    "operators": ("/admin/monitor", "/admin/accounts"),
}


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str  # i18n key
    value: int | float | str | None  # None: not known
    link: str | None
    note: str = ""  # i18n key, shown under the value
    #: how the page writes ``value``, in the reader's language: "count" (12,345), "percent" (a
    #: percentage 0 to 100, whole: 75%) or "text" (as it is)
    shown_as: Literal["count", "percent", "text"] = "count"


def today_range(zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start of today, start of tomorrow) in ``zone``, in UTC (a 23- or 25-hour day on a DST change)."""
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _presence_grace(state: PanelRuntime) -> timedelta:
    seconds = state.settings.presence_grace_seconds
    return AssignmentPolicy().presence_grace if seconds is None else timedelta(seconds=seconds)


def _figures(counts: DayFigures, binds: str | None, paths: set[str]) -> tuple[Figure, ...]:
    def link(key: str) -> str | None:
        return next((path for path in FIGURE_LINKS.get(key, ()) if path in paths), None)

    percent = counts.delivered_percent
    return (
        Figure("mo", N_("MOs received"), counts.mo_received, link("mo")),
        Figure("mt", N_("MTs sent"), counts.mt_sent, link("mt")),
        Figure(
            "delivered",
            N_("Delivered"),
            "—" if percent is None else percent,
            link("delivered"),
            N_("of the MTs with a final status"),
            "text" if percent is None else "percent",
        ),
        Figure("waiting", N_("Waiting now"), counts.waiting, link("waiting")),
        Figure("operators", N_("Operators online"), counts.operators_online, link("operators")),
        Figure("binds", N_("Binds up"), binds, link("binds"), shown_as="text"),
    )


def _section_items(request: Request, mode: Mode) -> tuple[MenuItem, ...]:
    sections = menu_for(require_user(request), panel(request).menu)
    return tuple(
        item
        for section in sections
        if section.mode is mode
        for item in section.items
        if item.path != DASHBOARD_PATH[mode]
    )


def _dashboard(request: Request, mode: Mode) -> Response:
    items = _section_items(request, mode)
    context = {"title": DASHBOARD_TITLE[mode], "items": items, "figures": ()}
    return render(request, "home/dashboard.html", context)


@requires(OPERATOR_MODE)
async def operator_dashboard(request: Request) -> Response:
    return _dashboard(request, Mode.OPERATOR)


@requires(PANEL_ACCESS)
async def admin_dashboard(request: Request) -> Response:
    user = require_user(request)
    state = panel(request)
    items = _section_items(request, Mode.ADMIN)
    now = datetime.now(UTC)
    since, until = today_range(ZoneInfo(user.timezone), now)
    async with state.readers() as session:
        counts = await day_figures(
            session, since, until, now=now, grace=_presence_grace(state), idle=session_idle(state.settings)
        )
    binds = DAEMON_STATUS.of(request).binds()
    shown = None if binds is None else f"{binds.total_up} / {binds.total}"
    paths = {item.path for item in items}
    context = {
        "title": DASHBOARD_TITLE[Mode.ADMIN],
        "items": items,
        "figures": _figures(counts, shown, paths),
        "binds": binds,
        "day": since,
    }
    return render(request, "home/dashboard.html", context)


routes = [
    Route("/", start, methods=["GET"], name="home.start"),
    Route("/operator", operator_dashboard, methods=["GET"], name="home.operator"),
    Route("/admin", admin_dashboard, methods=["GET"], name="home.admin"),
]
