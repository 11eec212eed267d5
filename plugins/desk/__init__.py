"""Built-in plugin `desk`: the operator's desk (live queue, thread, reply, client card, manual push)
and the assignment of waiting conversations to operators."""

from __future__ import annotations

from pathlib import Path

from gatewayd.assignment import AssignmentPolicy
from panel.auth.permissions import OPERATOR_MODE
from panel.types import MenuItem, Mode, Plugin
from plugins.desk.permissions import PERMISSIONS, PUSH_SEND
from plugins.desk.routes import routes
from plugins.desk.service import DESK, EVENT_HANDLERS, Desk, DeskSettings, desk_lifespan
from translations import N_

HERE = Path(__file__).parent

__all__ = ["DESK", "AssignmentPolicy", "Desk", "DeskSettings", "build_plugin", "plugin"]


def build_plugin(settings: DeskSettings | None = None) -> Plugin:
    """The desk with its assignment policy (overdue time, sweep interval) and stream heartbeat."""
    return Plugin(
        name="desk",
        title=N_("Desk"),
        routes=routes,
        menu_items=(
            MenuItem(N_("Desk"), "/desk", Mode.OPERATOR, OPERATOR_MODE, order=10),
            MenuItem(N_("Push SMS"), "/desk/push", Mode.OPERATOR, PUSH_SEND, order=20),
        ),
        templates=HERE / "templates",
        static=HERE / "static",
        permissions=PERMISSIONS,
        event_handlers=EVENT_HANDLERS,
        lifespan=desk_lifespan(settings or DeskSettings()),
        locale=HERE / "locale",
    )


plugin = build_plugin()
