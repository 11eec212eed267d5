"""The photo gallery through the panel (issue 13, 1.8): uploads checked by decoding (hostile files
refused with a clear 400, a 50 MB body 413), metadata stripped, URL imports refused toward loopback,
private, link-local and IPv6 loopback addresses and allowed from an allow-listed local server, the
public link's headers, search and albums, delete (404 at once), and an audit record per action; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.store.audit import AuditRecord
from gatewayd.store.photos import Photo
from panel.app import create_app
from panel.settings import PanelSettings

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PanelClient,
    login,
    memory_bus,
    prepare_store,
    seed_conversation,
    serving,
)
from .helpers import (
    GPS_IFD,
    PHP_HTML,
    POLYGLOT,
    SVG_WITH_SCRIPT,
    animated_gif,
    jpeg_with_gps,
    png,
    png_header_only,
)

RESPONSES: dict[str, tuple[int, bytes]] = {
    "/photo.png": (200, png((40, 30), (0, 200, 0))),
    "/page.html": (200, b"<html><body>not an image</body></html>"),
    "/moved.png": (302, b""),
}


async def _serve_image(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ", 2)[1].decode()
    status, body = RESPONSES.get(path, (404, b""))
    extra = "Location: http://127.0.0.1:1/photo.png\r\n" if status == 302 else ""
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    writer.close()


@pytest.fixture
async def image_server() -> AsyncIterator[int]:
    """A local HTTP server (on loopback: only reachable because it is allow-listed), its port."""
    server = await asyncio.start_server(_serve_image, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture(params=["sqlite_url", "pg_url"], ids=["sqlite", "pg"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def gallery_settings(database_url: str, tmp_path: Path, image_server: int) -> PanelSettings:
    return PanelSettings(
        database_url=database_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        public_url="https://chat.example.com",
        gallery_dir=str(tmp_path / "gallery"),
        gallery_fetch_allow=(f"127.0.0.1:{image_server}",),
    )


@pytest.fixture
async def gallery_client(
    gallery_settings: PanelSettings, example_on_path: None
) -> AsyncIterator[PanelClient]:
    await prepare_store(gallery_settings.database_url)
    app: Starlette = create_app(gallery_settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    async with serving(app) as client:
        assert (await login(client, "marta")).status_code == 303  # a master: gallery.manage by default
        yield client


async def csrf(client: PanelClient) -> str:
    response = await client.get("/admin/gallery", headers=HTML)
    assert response.status_code == 200
    return response.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


async def upload(
    client: PanelClient, name: str, data: bytes, content_type: str = "image/jpeg", album: str = ""
) -> tuple[int, str]:
    token = await csrf(client)
    response = await client.post(
        "/admin/gallery/upload",
        data={"csrf_token": token, "album": album},
        files={"file": (name, data, content_type)},
        headers=HTML,
    )
    return response.status_code, response.text


async def import_url(client: PanelClient, url: str, album: str = "") -> tuple[int, str]:
    token = await csrf(client)
    response = await client.post(
        "/admin/gallery/import", data={"csrf_token": token, "url": url, "album": album}, headers=HTML
    )
    return response.status_code, response.text


async def photos(client: PanelClient) -> list[Photo]:
    async with client.runtime.sessionmaker() as session:
        return list((await session.scalars(select(Photo).order_by(Photo.id))).all())


async def audit_records(client: PanelClient, action: str) -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        statement = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list((await session.scalars(statement)).all())


def stored(settings: PanelSettings, photo: Photo, suffix: str = "") -> Path:
    return Path(settings.gallery_dir) / f"{photo.token}{suffix}"


async def test_an_upload_is_stored_without_its_metadata_with_a_thumbnail_and_audited(
    gallery_client: PanelClient, gallery_settings: PanelSettings
) -> None:
    original = jpeg_with_gps((800, 600))
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)  # the fixture does carry GPS
    status, _ = await upload(gallery_client, "C:\\fotos\\playa.jpg", original, "text/plain", album=" Verano ")
    assert status == 303  # to the gallery, with a notice
    (photo,) = await photos(gallery_client)
    assert (photo.original_name, photo.album, photo.content_type) == ("playa.jpg", "verano", "image/jpeg")
    assert (photo.width, photo.height, photo.created_by) == (800, 600, "marta")
    assert len(photo.token) == 43
    data = stored(gallery_settings, photo).read_bytes()
    assert len(data) == photo.bytes
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (800, 600)
        assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
    assert b"SpyCam" not in data and b"secret comment" not in data and b"Exif" not in data
    with Image.open(stored(gallery_settings, photo, ".thumb")) as thumbnail:
        assert max(thumbnail.size) == 320
    (record,) = await audit_records(gallery_client, "photo.upload")
    assert record.subject == f"photo:{photo.id}" and record.actor == "marta"
    assert record.details["after"]["album"] == "verano"


@pytest.mark.parametrize(
    ("name", "data", "content_type", "message"),
    [
        ("shell.jpg", POLYGLOT, "image/jpeg", "is not a JPEG, PNG, WebP or GIF image"),
        ("page.jpg", PHP_HTML, "image/jpeg", "is not a JPEG, PNG, WebP or GIF image"),
        ("logo.svg", SVG_WITH_SCRIPT, "image/svg+xml", "is not a JPEG, PNG, WebP or GIF image"),
        ("logo.png", SVG_WITH_SCRIPT, "image/png", "is not a JPEG, PNG, WebP or GIF image"),
        ("bomb.png", png_header_only(100_000, 100_000), "image/png", "too many pixels"),
        ("bomb2.png", png_header_only(7_000, 7_000), "image/png", "too many pixels"),
        ("cut.png", png((200, 200))[:120], "image/png", "damaged or truncated"),
        ("big.png", b"\x89PNG" + b"\x00" * (8 * 1024 * 1024), "image/png", "at most 8 MiB"),
    ],
)
async def test_hostile_or_broken_files_are_refused_with_a_clear_message(
    gallery_client: PanelClient, name: str, data: bytes, content_type: str, message: str
) -> None:
    status, text = await upload(gallery_client, name, data, content_type)
    assert status == 400
    assert message in text
    assert await photos(gallery_client) == []
    assert await audit_records(gallery_client, "photo.upload") == []


async def test_a_real_jpeg_carrying_php_is_stored_as_pixels_only(
    gallery_client: PanelClient, gallery_settings: PanelSettings
) -> None:
    carrier = io.BytesIO()
    Image.new("RGB", (50, 50), (1, 2, 3)).save(carrier, "JPEG", comment=PHP_HTML)
    status, _ = await upload(gallery_client, "avatar.php.jpg", carrier.getvalue() + PHP_HTML)
    assert status == 303
    (photo,) = await photos(gallery_client)
    data = stored(gallery_settings, photo).read_bytes()
    assert b"<?php" not in data and b"<script" not in data


async def test_an_animated_gif_keeps_its_first_frame(
    gallery_client: PanelClient, gallery_settings: PanelSettings
) -> None:
    assert (await upload(gallery_client, "anim.gif", animated_gif(), "image/gif"))[0] == 303
    (photo,) = await photos(gallery_client)
    assert photo.content_type == "image/gif"
    with Image.open(stored(gallery_settings, photo)) as image:
        assert getattr(image, "n_frames", 1) == 1


async def test_a_50_mb_upload_is_refused_before_it_is_read(gallery_client: PanelClient) -> None:
    status, text = await upload(gallery_client, "huge.jpg", b"\xff\xd8" + b"\x00" * (50 * 1024 * 1024))
    assert status == 413
    assert "La petición es demasiado grande." in text  # before the session is read: the default language
    assert await photos(gallery_client) == []


async def test_an_upload_without_a_file_is_a_400(gallery_client: PanelClient) -> None:
    token = await csrf(gallery_client)
    response = await gallery_client.post("/admin/gallery/upload", data={"csrf_token": token}, headers=HTML)
    assert response.status_code == 400
    assert "Choose an image file" in response.text


NOT_PUBLIC = "only fetches from public addresses"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1/photo.png", NOT_PUBLIC),
        ("http://localhost/photo.png", NOT_PUBLIC),
        ("http://10.1.2.3/photo.png", NOT_PUBLIC),
        ("http://192.168.1.1/photo.png", NOT_PUBLIC),
        ("http://169.254.169.254/latest/meta-data/", NOT_PUBLIC),
        ("http://[::1]/photo.png", NOT_PUBLIC),
        ("http://[::ffff:127.0.0.1]/photo.png", NOT_PUBLIC),
        ("http://0.0.0.0/photo.png", NOT_PUBLIC),
        ("http://224.0.0.1/photo.png", NOT_PUBLIC),
        ("ftp://example.com/photo.png", "Give an http:// or https://"),
        ("file:///etc/passwd", "Give an http:// or https://"),
        ("http://user:pw@example.com/photo.png", "Give an http:// or https://"),
        ("not a url", "Give an http:// or https://"),
    ],
)
async def test_url_imports_toward_local_or_private_addresses_are_refused(
    gallery_client: PanelClient, url: str, message: str
) -> None:
    status, text = await import_url(gallery_client, url)
    assert status == 400
    assert message in text
    assert await photos(gallery_client) == []


async def test_an_allow_listed_local_server_is_imported_from(
    gallery_client: PanelClient, gallery_settings: PanelSettings, image_server: int
) -> None:
    status, _ = await import_url(gallery_client, f"http://127.0.0.1:{image_server}/photo.png", "promos")
    assert status == 303
    (photo,) = await photos(gallery_client)
    assert (photo.original_name, photo.album, photo.content_type) == ("photo.png", "promos", "image/png")
    assert (photo.width, photo.height) == (40, 30)
    (record,) = await audit_records(gallery_client, "photo.import")
    assert record.subject == f"photo:{photo.id}"
    # From the same allowed server: not an image, a redirect (refused, even toward an allowed place).
    status, text = await import_url(gallery_client, f"http://127.0.0.1:{image_server}/page.html")
    assert status == 400 and "is not a JPEG" in text
    status, text = await import_url(gallery_client, f"http://127.0.0.1:{image_server}/moved.png")
    assert status == 400 and "redirects elsewhere" in text
    status, text = await import_url(gallery_client, f"http://127.0.0.1:{image_server}/missing.png")
    assert status == 400 and "answered with an error" in text
    assert len(await photos(gallery_client)) == 1


async def test_the_public_link_serves_the_image_to_anyone_until_it_is_deleted(
    gallery_client: PanelClient, gallery_settings: PanelSettings
) -> None:
    assert (await upload(gallery_client, "oferta.png", png((500, 100)), "image/png", "promos"))[0] == 303
    (photo,) = await photos(gallery_client)
    page = await gallery_client.get("/admin/gallery", headers=HTML)
    assert f"https://chat.example.com/p/{photo.token}" in page.text
    # deleting cannot be undone: the browser asks first (panel.js, data-confirm)
    assert 'data-confirm="Delete oferta.png? Its public link stops working' in page.text
    anonymous = gallery_client.another_browser()
    async with anonymous:
        served = await anonymous.get(f"/p/{photo.token}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-disposition"] == "inline"
        assert served.headers["cache-control"] == "public, max-age=300"
        assert served.content == stored(gallery_settings, photo).read_bytes()
        thumb = await anonymous.get(f"/p/{photo.token}/thumb")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert (await anonymous.get(f"/p/{photo.token[:-1]}x")).status_code == 404
        assert (await anonymous.get("/p/short")).status_code == 404

        token = await csrf(gallery_client)
        deleted = await gallery_client.post(
            f"/admin/gallery/{photo.id}/delete", data={"csrf_token": token}, headers=HTML
        )
        assert deleted.status_code == 303
        assert (await anonymous.get(f"/p/{photo.token}")).status_code == 404
        assert (await anonymous.get(f"/p/{photo.token}/thumb")).status_code == 404
    assert not stored(gallery_settings, photo).exists()
    assert not stored(gallery_settings, photo, ".thumb").exists()
    (record,) = await audit_records(gallery_client, "photo.delete")
    assert record.subject == f"photo:{photo.id}" and record.details["before"]["album"] == "promos"
    token = await csrf(gallery_client)
    again = await gallery_client.post(
        f"/admin/gallery/{photo.id}/delete", data={"csrf_token": token}, headers=HTML
    )
    assert again.status_code == 404
    # beyond photos.id (32 bits) and beyond 64 bits: no photo, not a database error
    for photo_id in ("999999", "2147483648", "9223372036854775808", "99999999999999999999999"):
        missing = await gallery_client.post(
            f"/admin/gallery/{photo_id}/delete", data={"csrf_token": token}, headers=HTML
        )
        assert missing.status_code == 404, photo_id
    page = await gallery_client.get("/admin/gallery", headers=HTML)
    assert photo.token not in page.text


async def test_search_by_name_and_album(gallery_client: PanelClient) -> None:
    for name, album in (("playa.png", "verano"), ("nieve.png", "invierno"), ("100%_sol.png", "verano")):
        assert (await upload(gallery_client, name, png(), "image/png", album))[0] == 303
    by_token = {photo.original_name: photo.token for photo in await photos(gallery_client)}

    async def shown(query: str) -> set[str]:
        page = await gallery_client.get(f"/admin/gallery?{query}", headers=HTML)
        assert page.status_code == 200
        return {name for name, token in by_token.items() if token in page.text}

    assert await shown("q=PLAYA") == {"playa.png"}
    assert await shown("album=verano") == {"playa.png", "100%_sol.png"}
    assert await shown("q=invierno") == {"nieve.png"}
    assert await shown("q=%25_") == {"100%_sol.png"}  # LIKE wildcards are searched for literally
    assert await shown("q=verano&album=invierno") == set()


async def test_an_operator_may_not_open_the_gallery(gallery_client: PanelClient) -> None:
    operator = gallery_client.another_browser()
    async with operator:
        assert (await login(operator, "oscar")).status_code == 303
        assert (await operator.get("/admin/gallery", headers=HTML)).status_code == 403


async def test_the_desk_offers_the_gallerys_photos_to_insert_as_links(
    gallery_client: PanelClient, gallery_settings: PanelSettings
) -> None:
    assert (await upload(gallery_client, "oferta.png", png(), "image/png", "promos"))[0] == 303
    assert (await upload(gallery_client, "borrada.png", png(), "image/png"))[0] == 303
    kept, gone = await photos(gallery_client)
    token = await csrf(gallery_client)
    delete = await gallery_client.post(f"/admin/gallery/{gone.id}/delete", data={"csrf_token": token})
    assert delete.status_code == 303
    samples = await seed_conversation(gallery_settings.database_url, "oscar", "34600111222")
    operator = gallery_client.another_browser()
    async with operator:
        assert (await login(operator, "oscar")).status_code == 303
        desk = await operator.get(f"/desk?c={samples.conversation_id}", headers=HTML)
        assert desk.status_code == 200
        link = f"https://chat.example.com/p/{kept.token}"
        assert f'data-insert="{link}" data-target="reply-text"' in desk.text
        assert gone.token not in desk.text
        push = await operator.get("/desk/push", headers=HTML)
        assert f'data-insert="{link}" data-target="push-text"' in push.text


def form_of(page: str, action: str) -> str:
    """The HTML of the page's form posting to ``action``."""
    return page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]


async def test_a_refused_import_comes_back_as_typed_with_its_error(
    gallery_client: PanelClient, image_server: int
) -> None:
    url = f"http://127.0.0.1:{image_server}/page.html?size=big&amp=1"
    status, text = await import_url(gallery_client, url, "Promos de Verano")
    assert status == 400
    form = form_of(text, "/admin/gallery/import")
    assert f'id="url" name="url" type="url" maxlength="2000" value="{url.replace("&", "&amp;")}"' in form
    assert 'id="import-album" name="album" list="albums" maxlength="64" value="Promos de Verano"' in form
    assert 'aria-describedby="import-error"' in form
    assert 'id="import-error" role="alert">The server did not send the image (it answered' in form
    upload_form = form_of(text, "/admin/gallery/upload")
    assert 'role="alert"' not in upload_form and 'value="Promos de Verano"' not in upload_form
    assert await photos(gallery_client) == []


async def test_a_refused_upload_keeps_the_album_and_asks_for_the_file_again(
    gallery_client: PanelClient,
) -> None:
    status, text = await upload(gallery_client, "shell.jpg", POLYGLOT, album="Promos de Verano")
    assert status == 400
    form = form_of(text, "/admin/gallery/upload")
    assert 'id="upload-album" name="album" list="albums" maxlength="64" value="Promos de Verano"' in form
    assert "The file is not a JPEG, PNG, WebP or GIF image." in form
    assert "Choose the file again: the browser does not keep it after an error." in form
    assert 'value="Promos de Verano"' not in form_of(text, "/admin/gallery/import")
    # No file sent: nothing to choose again.
    token = await csrf(gallery_client)
    response = await gallery_client.post(
        "/admin/gallery/upload", data={"csrf_token": token, "album": "Otoño"}, headers=HTML
    )
    assert response.status_code == 400
    form = form_of(response.text, "/admin/gallery/upload")
    assert "Choose an image file to upload." in form and 'value="Otoño"' in form
    assert "Choose the file again" not in form
