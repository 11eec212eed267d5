"""Built-in plugin `campaigns`: the mass push in "animator mode" (manual 1.6) — campaigns to the clients
who answered one of their last pushes, their audience counted before sending, the text previewed
for a sample client, scheduled, followed live, paused, resumed or cancelled. The daemon's sender
(``gatewayd.campaigns``) does the sending."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.campaigns.permissions import CAMPAIGNS_MANAGE, PERMISSIONS
from plugins.campaigns.routes import routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="campaigns",
    title=N_("Mass push"),
    routes=routes,
    menu_items=(MenuItem(N_("Mass push"), "/admin/campaigns", Mode.ADMIN, CAMPAIGNS_MANAGE, order=85),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
