"""The photo gallery's pages (manual 1.8): /admin/gallery (upload, URL import, albums, search, delete)
for those holding ``gallery.manage``, and the public links /p/{token} and /p/{token}/thumb that anyone
holding a link may open (no session: the client opens it on a phone)."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import func, or_, select
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from gatewayd.net_safety import MAX_URL
from gatewayd.store.base import MAX_INT32_ID, utcnow
from gatewayd.store.photos import ALBUM_LENGTH, NAME_LENGTH, Photo, live_photo
from panel.access import public, requires
from panel.audit import audit
from panel.auth.permissions import PANEL_ACCESS
from panel.web import db, db_read, error_response, panel, render, require_user
from plugins.gallery.fetch import FetchRefused, fetch
from plugins.gallery.images import MAX_BYTES, TOO_LARGE, CleanImage, ImageRefused, clean_image
from plugins.gallery.links import PUBLIC_PREFIX, public_base
from plugins.gallery.permissions import GALLERY_MANAGE
from translations import N_

GALLERY_PATH = "/admin/gallery"
UPLOAD_PATH = "/admin/gallery/upload"
IMPORT_PATH = "/admin/gallery/import"
PAGE_SIZE = 60
DEFAULT_ALBUM = "general"
#: A phone may keep a photo this long; the panel itself answers 404 as soon as the photo is deleted.
CACHE_CONTROL = "public, max-age=300"

#: Beside an upload's refusal once a file was sent: a browser never fills a file input again.
CHOOSE_AGAIN = N_("Choose the file again: the browser does not keep it after an error.")
NOTICES = {
    "uploaded": N_("The photo was added to the gallery."),
    "deleted": N_("The photo was deleted: its link no longer works."),
}


def _field(form: FormData, name: str, limit: int) -> str:
    """A text field, stripped and cut at ``limit``: as used, and as shown again beside a refusal."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def gallery_dir(request: Request) -> Path:
    return Path(panel(request).settings.gallery_dir)


def _typed_album(form: FormData) -> str:
    """The album field as typed (room for the spaces that :func:`_album` folds)."""
    return _field(form, "album", ALBUM_LENGTH * 2)


def _album(form: FormData) -> str:
    return " ".join(_typed_album(form).split())[:ALBUM_LENGTH].lower() or DEFAULT_ALBUM


async def _photos(request: Request, query: str, album: str) -> tuple[list[Photo], list[tuple[str, int]]]:
    async with db_read(request) as session:
        statement = select(Photo).where(Photo.deleted_at.is_(None))
        if album:
            statement = statement.where(Photo.album == album)
        if query:
            pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            statement = statement.where(
                or_(
                    func.lower(Photo.original_name).like(pattern, escape="\\"),
                    Photo.album.like(pattern, escape="\\"),
                )
            )
        photos = list((await session.scalars(statement.order_by(Photo.id.desc()).limit(PAGE_SIZE))).all())
        albums = await session.execute(
            select(Photo.album, func.count())
            .where(Photo.deleted_at.is_(None))
            .group_by(Photo.album)
            .order_by(Photo.album)
        )
        return photos, [(str(name), int(count)) for name, count in albums]


async def _page(request: Request, status: int = 200, **context: Any) -> Response:
    query = request.query_params.get("q", "").strip()[:NAME_LENGTH]
    album = request.query_params.get("album", "").strip()[:ALBUM_LENGTH].lower()
    photos, albums = await _photos(request, query, album)
    notice = request.query_params.get("notice", "")
    values = {
        "title": N_("Photo gallery"),
        "photos": photos,
        "albums": albums,
        "query": query,
        "album": album,
        "base": public_base(request),
        "public_url_set": panel(request).settings.public_url is not None,
        "notice": NOTICES.get(notice),
        "error": None,
        "error_form": None,  # "upload" or "import": the form the error is shown in
        "choose_again": None,  # CHOOSE_AGAIN once a file was sent
        "url": "",
        "upload_album": album,
        "import_album": album,
        **context,
    }
    return render(request, "gallery/gallery.html", values, status_code=status)


@requires(PANEL_ACCESS, GALLERY_MANAGE)
async def gallery_page(request: Request) -> Response:
    return await _page(request)


def _write(directory: Path, token: str, image: CleanImage) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{token}.thumb").write_bytes(image.thumbnail)
    (directory / token).write_bytes(image.data)


def _remove(directory: Path, token: str) -> None:
    for name in (token, f"{token}.thumb"):
        (directory / name).unlink(missing_ok=True)


async def _store(request: Request, image: CleanImage, name: str, album: str, action: str) -> Response:
    """Writes the files, then the row and its audit record in one transaction (the files removed if
    that fails)."""
    user = require_user(request)
    token = secrets.token_urlsafe(32)
    directory = gallery_dir(request)
    await anyio.to_thread.run_sync(_write, directory, token, image)
    try:
        async with db(request) as session, session.begin():
            photo = Photo(
                token=token,
                album=album,
                original_name=name[:NAME_LENGTH] or "-",
                content_type=image.content_type,
                bytes=len(image.data),
                width=image.width,
                height=image.height,
                created_by=user.username,
                created_at=utcnow(),
            )
            session.add(photo)
            await session.flush()
            details = {
                "before": None,
                "after": {
                    "album": album,
                    "name": photo.original_name,
                    "content_type": image.content_type,
                    "bytes": photo.bytes,
                    "width": image.width,
                    "height": image.height,
                },
            }
            await audit(session, request, action, subject=f"photo:{photo.id}", details=details)
    except BaseException:
        await anyio.to_thread.run_sync(_remove, directory, token)
        raise
    return RedirectResponse(f"{GALLERY_PATH}?notice=uploaded", status_code=303)


@requires(PANEL_ACCESS, GALLERY_MANAGE)
async def upload(request: Request) -> Response:
    form = await request.form(max_files=1, max_part_size=MAX_BYTES)
    try:
        typed = {"error_form": "upload", "upload_album": _typed_album(form)}
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await _page(request, 400, error=N_("Choose an image file to upload."), **typed)
        data = await upload.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return await _page(request, 400, error=TOO_LARGE, choose_again=CHOOSE_AGAIN, **typed)
        try:
            image = await anyio.to_thread.run_sync(clean_image, data)
        except ImageRefused as refused:
            return await _page(request, 400, error=refused.message, choose_again=CHOOSE_AGAIN, **typed)
        name = Path(upload.filename.replace("\\", "/")).name
        return await _store(request, image, name, _album(form), "photo.upload")
    finally:
        await form.close()


@requires(PANEL_ACCESS, GALLERY_MANAGE)
async def import_url(request: Request) -> Response:
    form = await request.form()
    url = _field(form, "url", MAX_URL + 1)
    try:
        data = await fetch(url, panel(request).settings.gallery_fetch_allow)
        image = await anyio.to_thread.run_sync(clean_image, data)
    except (FetchRefused, ImageRefused) as refused:
        typed = {"url": _field(form, "url", MAX_URL), "import_album": _typed_album(form)}
        return await _page(request, 400, error=refused.message, error_form="import", **typed)
    name = url.rstrip("/").rsplit("/", 1)[-1].partition("?")[0] or url
    return await _store(request, image, name, _album(form), "photo.import")


@requires(PANEL_ACCESS, GALLERY_MANAGE)
async def delete(request: Request) -> Response:
    photo_id: int = request.path_params["photo_id"]
    if photo_id > MAX_INT32_ID:
        return error_response(request, 404, N_("There is no such photo."))
    async with db(request) as session, session.begin():
        photo = await session.get(Photo, photo_id, with_for_update=True)
        if photo is None or photo.deleted_at is not None:
            return error_response(request, 404, N_("There is no such photo."))
        photo.deleted_at = utcnow()
        token = photo.token
        details = {"before": {"album": photo.album, "name": photo.original_name}, "after": None}
        await audit(session, request, "photo.delete", subject=f"photo:{photo.id}", details=details)
    with contextlib.suppress(OSError):  # the row says deleted: the link answers 404 whatever the disk does
        await anyio.to_thread.run_sync(_remove, gallery_dir(request), token)
    return RedirectResponse(f"{GALLERY_PATH}?notice=deleted", status_code=303)


async def _serve(request: Request, thumbnail: bool) -> Response:
    async with db_read(request) as session:
        photo = await live_photo(session, str(request.path_params["token"]))
    if photo is None:
        return error_response(request, 404, N_("There is no such photo."))
    path = gallery_dir(request) / (f"{photo.token}.thumb" if thumbnail else photo.token)
    if not path.is_file():
        return error_response(request, 404, N_("There is no such photo."))
    headers = {
        "cache-control": CACHE_CONTROL,
        "content-disposition": "inline",
        "x-content-type-options": "nosniff",
    }
    return FileResponse(path, media_type=photo.content_type, headers=headers)


@public
async def photo_file(request: Request) -> Response:
    return await _serve(request, thumbnail=False)


@public
async def photo_thumbnail(request: Request) -> Response:
    return await _serve(request, thumbnail=True)


routes = [
    Route(GALLERY_PATH, gallery_page, methods=["GET"], name="gallery.page"),
    Route(UPLOAD_PATH, upload, methods=["POST"], name="gallery.upload"),
    Route(IMPORT_PATH, import_url, methods=["POST"], name="gallery.import"),
    Route("/admin/gallery/{photo_id:id}/delete", delete, methods=["POST"], name="gallery.delete"),
    Route(PUBLIC_PREFIX + "{token}", photo_file, methods=["GET"], name="gallery.photo"),
    Route(PUBLIC_PREFIX + "{token}/thumb", photo_thumbnail, methods=["GET"], name="gallery.thumbnail"),
]
