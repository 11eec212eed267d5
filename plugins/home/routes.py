"""The start pages: `/` sends each account to the mode it may use."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from panel.access import requires
from panel.auth.permissions import OPERATOR_MODE, PANEL_ACCESS
from panel.menu import Mode, menu_for
from panel.web import panel, render, require_user
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
    return render(request, "home/dashboard.html", {"title": N_("Start"), "items": ()})


def _dashboard(request: Request, mode: Mode) -> Response:
    user = require_user(request)
    sections = menu_for(user, panel(request).menu)
    items = tuple(
        item
        for section in sections
        if section.mode is mode
        for item in section.items
        if item.path != DASHBOARD_PATH[mode]
    )
    return render(request, "home/dashboard.html", {"title": DASHBOARD_TITLE[mode], "items": items})


@requires(OPERATOR_MODE)
async def operator_dashboard(request: Request) -> Response:
    return _dashboard(request, Mode.OPERATOR)


@requires(PANEL_ACCESS)
async def admin_dashboard(request: Request) -> Response:
    return _dashboard(request, Mode.ADMIN)


routes = [
    Route("/", start, methods=["GET"], name="home.start"),
    Route("/operator", operator_dashboard, methods=["GET"], name="home.operator"),
    Route("/admin", admin_dashboard, methods=["GET"], name="home.admin"),
]
