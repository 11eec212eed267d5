"""Built-in plugin `gallery`: the photo gallery (manual 1.8) — images uploaded or imported from a URL,
checked and stripped of their metadata, in albums, each with an unguessable public link (/p/{token})
that an operator sends to a client as text."""

from __future__ import annotations

from pathlib import Path

from panel.types import MenuItem, Mode, Plugin
from plugins.gallery.permissions import GALLERY_MANAGE, PERMISSIONS
from plugins.gallery.routes import UPLOAD_PATH, routes
from translations import N_

HERE = Path(__file__).parent

plugin = Plugin(
    name="gallery",
    title=N_("Photo gallery"),
    routes=routes,
    menu_items=(MenuItem(N_("Photo gallery"), "/admin/gallery", Mode.ADMIN, GALLERY_MANAGE, order=80),),
    templates=HERE / "templates",
    static=HERE / "static",
    permissions=PERMISSIONS,
    locale=HERE / "locale",
    uploads=(UPLOAD_PATH,),
)
