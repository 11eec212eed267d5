"""Built-in plugin `apikeys`: the admin page of the integrator API's keys (/admin/api-keys) — make a
key (shown once), see each key's scopes, allow-list, rate and last use, revoke one."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.apikeys.permissions import APIKEYS_MANAGE, PERMISSIONS
from plugins.apikeys.routes import KEYS_PATH, routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="apikeys",
    title=N_("API keys"),
    routes=routes,
    menu_items=(MenuItem(N_("API keys"), KEYS_PATH, Mode.ADMIN, APIKEYS_MANAGE, order=90),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
