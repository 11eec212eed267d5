"""Built-in plugin `home`: the start page of each mode, listing what the account may open."""

from pathlib import Path

from panel.auth.permissions import OPERATOR_MODE, PANEL_ACCESS
from panel.types import MenuItem, Mode, Plugin
from plugins.home.messages import EN, ES
from plugins.home.routes import routes

plugin = Plugin(
    name="home",
    title="home.title",
    routes=routes,
    menu_items=(
        MenuItem("home.menu.operator", "/operator", Mode.OPERATOR, OPERATOR_MODE, order=0),
        MenuItem("home.menu.admin", "/admin", Mode.ADMIN, PANEL_ACCESS, order=0),
    ),
    templates=Path(__file__).parent / "templates",
    messages={"es": ES, "en": EN},
)
