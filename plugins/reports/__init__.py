"""Built-in plugin `reports`: the reports of manual 1.4 — traffic per day and per hour of the week,
per operator, per service, short code, carrier and country, and one client's history — read from the
hourly rollups the pipelines keep (``gatewayd.store.rollups``), each table exportable as CSV."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.reports.permissions import PERMISSIONS, REPORTS_VIEW
from plugins.reports.routes import BASE, routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="reports",
    title=N_("Reports"),
    routes=routes,
    menu_items=(MenuItem(N_("Reports"), BASE, Mode.ADMIN, REPORTS_VIEW, order=70),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
