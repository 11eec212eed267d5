"""The gallery's public links, for its own page and for the desk's photo picker (an operator inserts a
photo's link into a reply or a push: it travels as text, like anything the operator types)."""

from __future__ import annotations

from starlette.requests import Request

from gatewayd.store.photos import Photo, recent_photos
from panel.web import db_read, panel
from plugins.gallery.permissions import GALLERY_MANAGE

PUBLIC_PREFIX = "/p/"
#: The photos the desk offers to insert: the latest ones.
PICKER_SIZE = 24


def public_base(request: Request) -> str:
    """The origin of the public links: ``[panel] public_url``; without it, the address this request
    reached the panel at (what the gallery page warns about: clients may not reach that one)."""
    configured = panel(request).settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def public_link(request: Request, photo: Photo) -> str:
    return f"{public_base(request)}{PUBLIC_PREFIX}{photo.token}"


def gallery_loaded(request: Request) -> bool:
    return any(spec.name == GALLERY_MANAGE for spec in panel(request).permissions.specs)


async def photo_picker(request: Request) -> dict[str, object]:
    """The template context of the desk's photo picker: no photos when the gallery plugin is not loaded
    (its links would not be served)."""
    if not gallery_loaded(request):
        return {"photos": [], "photo_base": ""}
    async with db_read(request) as session:
        photos = await recent_photos(session, PICKER_SIZE)
    return {"photos": photos, "photo_base": public_base(request) + PUBLIC_PREFIX}
