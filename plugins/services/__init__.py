"""Built-in plugin `services`: the call-centre diversion switch per service (manual 1.5) and the
session reset of a list of clients (manual 1.7). It applies both through the desk plugin's assignment
service (`plugins.desk.service`), so it is loaded with the desk."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.services.permissions import CLIENTS_SESSION_RESET, PERMISSIONS, SERVICES_DIVERSION
from plugins.services.routes import SESSIONS_PATH, routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="services",
    title=N_("Services"),
    routes=routes,
    menu_items=(
        MenuItem(N_("Call-centre diversion"), "/admin/diversion", Mode.ADMIN, SERVICES_DIVERSION, order=50),
        MenuItem(N_("Session reset"), SESSIONS_PATH, Mode.ADMIN, CLIENTS_SESSION_RESET, order=70),
    ),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
    uploads=(SESSIONS_PATH,),
)
