"""Built-in plugin `conversations`: the conversation browser (search every conversation, read one
whole, with who wrote each MT and why one failed) and a client's whole history, for those allowed to
read other operators' answers (``operator.see_others``)."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.conversations.routes import routes
from plugins.desk.permissions import OPERATOR_SEE_OTHERS
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="conversations",
    title=N_("Conversations"),
    routes=routes,
    menu_items=(
        MenuItem(N_("Conversations"), "/admin/conversations", Mode.ADMIN, OPERATOR_SEE_OTHERS, order=25),
    ),
    templates=HERE / "templates",
    static=HERE / "static",
    locale=HERE / "locale",
)
