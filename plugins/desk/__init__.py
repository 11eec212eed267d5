"""Built-in plugin `desk`: the operator's desk (live queue, thread, reply, client card, manual push)
and the assignment of waiting conversations to operators."""

from __future__ import annotations

from pathlib import Path

from panel.assignment import AssignmentPolicy
from panel.auth.permissions import OPERATOR_MODE, PUSH_SEND
from plugins.contract import MenuItem, Mode, Plugin
from plugins.desk.messages import EN, ES
from plugins.desk.routes import routes
from plugins.desk.service import EVENT_HANDLERS, DeskSettings, startup_hook, stop_assignment

HERE = Path(__file__).parent

__all__ = ["AssignmentPolicy", "DeskSettings", "build_plugin", "plugin"]


def build_plugin(settings: DeskSettings | None = None) -> Plugin:
    """The desk with its assignment policy (overdue time, sweep interval) and stream heartbeat."""
    return Plugin(
        name="desk",
        title="desk.title",
        routes=routes,
        menu_items=(
            MenuItem("desk.menu", "/desk", Mode.OPERATOR, OPERATOR_MODE, order=10),
            MenuItem("desk.menu.push", "/desk/push", Mode.OPERATOR, PUSH_SEND, order=20),
        ),
        templates=HERE / "templates",
        static=HERE / "static",
        event_handlers=EVENT_HANDLERS,
        on_startup=startup_hook(settings or DeskSettings()),
        on_shutdown=stop_assignment,
        messages={"es": ES, "en": EN},
    )


plugin = build_plugin()
