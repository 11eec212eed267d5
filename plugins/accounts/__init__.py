"""Built-in plugin `accounts`: operators and masters managed from the control panel (list, create,
edit, powers, pools, limit, password reset, lock and unlock), every change audited."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.accounts.routes import routes
from plugins.accounts.rules import ACCOUNTS_MANAGE, PERMISSIONS
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="accounts",
    title=N_("Operators and masters"),
    routes=routes,
    menu_items=(
        MenuItem(N_("Operators and masters"), "/admin/accounts", Mode.ADMIN, ACCOUNTS_MANAGE, order=30),
    ),
    templates=HERE / "templates",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
