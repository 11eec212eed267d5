"""Built-in plugin `auth`: sign-in, secure sign-out, language switch and the user's own profile."""

from pathlib import Path

from panel.types import Plugin
from plugins.auth.messages import EN, ES
from plugins.auth.routes import routes

plugin = Plugin(
    name="auth",
    title="auth.title",
    routes=routes,
    templates=Path(__file__).parent / "templates",
    messages={"es": ES, "en": EN},
)
