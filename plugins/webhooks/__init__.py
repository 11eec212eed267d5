"""Built-in plugin `webhooks` (issue 14): subscriptions that send the gateway's events (MO received, MT
status, receipt, opt-out / opt-in) to another system over HTTP, signed; their deliveries, failing and
dead ones, and "redeliver". The daemon does the posting (``gatewayd.webhooks``)."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.webhooks.permissions import PERMISSIONS, WEBHOOKS_MANAGE
from plugins.webhooks.routes import LIST_PATH, routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="webhooks",
    title=N_("Webhooks"),
    routes=routes,
    menu_items=(MenuItem(N_("Webhooks"), LIST_PATH, Mode.ADMIN, WEBHOOKS_MANAGE, order=85),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
)
