"""Built-in plugin `monitor`: the live monitor of incoming and outgoing SMS in the control panel (every
live conversation coloured by state with its elapsed time ticking, live from the bus; reassignment of
one or many to another operator or back to the queue; the operators' presence strip)."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.monitor.permissions import MONITOR_VIEW, PERMISSIONS
from plugins.monitor.routes import routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="monitor",
    title=N_("Live monitor"),
    routes=routes,
    menu_items=(MenuItem(N_("Live monitor"), "/admin/monitor", Mode.ADMIN, MONITOR_VIEW, order=10),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
