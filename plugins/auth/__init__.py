"""Built-in plugin `auth`: sign-in, secure sign-out, language switch and the user's own profile."""

from pathlib import Path

from panel.types import Plugin
from plugins.auth.routes import routes
from translations import N_

plugin = Plugin(
    name="auth",
    title=N_("Sign-in and profile"),
    routes=routes,
    templates=Path(__file__).parent / "templates",
    locale=Path(__file__).parent / "locale",
)
