"""Built-in plugin `home`: the start page of each mode, listing what the account may open; the control
panel's shows today's figures and the binds up (from the daemon's status events)."""

from pathlib import Path

from panel.auth.permissions import OPERATOR_MODE, PANEL_ACCESS
from panel.types import MenuItem, Mode, Plugin
from plugins.home.routes import routes
from plugins.home.status import follow_daemon_status
from translations import N_

plugin = Plugin(
    name="home",
    title=N_("Start"),
    routes=routes,
    menu_items=(
        MenuItem(N_("Operator start"), "/operator", Mode.OPERATOR, OPERATOR_MODE, order=0),
        MenuItem(N_("Control panel start"), "/admin", Mode.ADMIN, PANEL_ACCESS, order=0),
    ),
    templates=Path(__file__).parent / "templates",
    locale=Path(__file__).parent / "locale",
    lifespan=follow_daemon_status,
)
