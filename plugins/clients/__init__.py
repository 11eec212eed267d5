"""Built-in plugin `clients`: client control in the control panel (ban and unban by client ID, one or
a pasted list, and the client's card with their ban and opt-out state and history)."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.clients.permissions import CLIENTS_CONTROL, PERMISSIONS
from plugins.clients.routes import routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="clients",
    title=N_("Client control"),
    routes=routes,
    menu_items=(MenuItem(N_("Client control"), "/admin/clients", Mode.ADMIN, CLIENTS_CONTROL, order=30),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
