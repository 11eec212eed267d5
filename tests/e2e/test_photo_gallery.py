"""Issue 13's acceptance for the photo gallery: a master uploads a photo in a real browser, an
operator inserts its link into a reply from the desk's picker, the simulator's virtual phone shows the
MT, and the link in it opens the image (no session: the phone is not signed in to the panel)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, expect

from gatewayd.store.accounts import Role
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import PASSWORD, Stack, StackOptions, add_operator, desk_plugins
from tests.e2e.test_operator_desk import go_online, sign_in, simulator_messages, subscriber
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

MASTER = "marta"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/p/[A-Za-z0-9_-]{43}")


async def sign_in_master(page: Page) -> None:
    await page.goto("/admin/gallery")
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Galería de fotos")


async def test_an_uploaded_photo_travels_as_a_link_the_phone_opens(
    stack: Stack, browser: Browser, artifacts: Path, tmp_path: Path
) -> None:
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, username=MASTER, role=Role.MASTER)
    picture = tmp_path / "oferta-verano.jpg"
    Image.new("RGB", (640, 400), (230, 120, 20)).save(picture, "JPEG")
    contexts = [
        await browser.new_context(
            base_url=url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
        )
        for url in (stack.panel_url, stack.panel_url, stack.simulator_url)
    ]
    try:
        admin, desk, phone = [await context.new_page() for context in contexts]
        # The master uploads the photo into an album.
        await sign_in_master(admin)
        # A refused import and a refused upload come back as typed, each error in its own form.
        await admin.fill("#url", "http://127.0.0.1:1/oferta.png")
        await admin.fill("#import-album", "Promos")
        async with admin.expect_navigation():
            await admin.click("form[action='/admin/gallery/import'] button[type=submit]")
        await expect(admin.locator("#import-error")).to_contain_text("solo descarga de direcciones públicas")
        await expect(admin.locator("#url")).to_have_value("http://127.0.0.1:1/oferta.png")
        await expect(admin.locator("#import-album")).to_have_value("Promos")
        not_an_image = tmp_path / "notas.jpg"
        not_an_image.write_text("no es una imagen")
        await admin.set_input_files("#file", str(not_an_image))
        await admin.fill("#upload-album", "Promos")
        async with admin.expect_navigation():
            await admin.click("form[action='/admin/gallery/upload'] button[type=submit]")
        await expect(admin.locator("#upload-error")).to_contain_text("Vuelve a elegir el archivo")
        await expect(admin.locator("#upload-album")).to_have_value("Promos")
        await admin.screenshot(path=str(artifacts / "gallery-refused-upload.png"), full_page=True)
        await admin.set_input_files("#file", str(picture))
        await admin.fill("#upload-album", "Promos")
        async with admin.expect_navigation():
            await admin.click("form[action='/admin/gallery/upload'] button[type=submit]")
        await expect(admin.locator(".flash.ok")).to_have_text("La foto se añadió a la galería.")
        card = admin.locator(".photo", has_text="oferta-verano.jpg")
        await expect(card).to_contain_text("promos · 640×400")
        link = await card.locator("input.link").input_value()
        assert LINK.fullmatch(link), link
        await expect(card.locator("img")).to_have_js_property("naturalWidth", 320)  # the thumbnail
        await admin.set_viewport_size({"width": 1366, "height": 768})
        await admin.screenshot(path=str(artifacts / "gallery-1366.png"), full_page=True)
        await admin.set_viewport_size({"width": 390, "height": 844})
        await admin.screenshot(path=str(artifacts / "gallery-390.png"), full_page=True)

        # The client writes from the simulator's phone; the operator answers with the photo's link.
        msisdn = subscriber()
        question = f"foto {uuid.uuid4().hex[:6]}"
        await phone.goto("/phone")
        await phone.fill("#msisdn", msisdn)
        await phone.click("#connect")
        await expect(phone.locator("#status")).to_contain_text(msisdn)
        await sign_in(desk)
        await go_online(desk)
        await phone.fill("#text", question)
        await phone.press("#text", "Enter")
        item = desk.locator(".queue-item", has_text=question)
        await expect(item).to_be_visible()
        async with desk.expect_navigation():
            await item.locator("a").click()
        await desk.fill("#reply-text", "Mira la oferta:")
        await desk.click(".photo-picker summary")
        await desk.click(".photo-insert[title='promos · oferta-verano.jpg']")
        text = f"Mira la oferta: {link}"
        await expect(desk.locator("#reply-text")).to_have_value(text)
        await desk.set_viewport_size({"width": 1366, "height": 768})
        await desk.screenshot(path=str(artifacts / "gallery-desk-1366.png"))
        await desk.set_viewport_size({"width": 390, "height": 844})
        await desk.screenshot(path=str(artifacts / "gallery-desk-390.png"), full_page=True)
        async with desk.expect_navigation():
            await desk.click("form.reply button[type=submit]")

        await expect(phone.locator(".msg.mt")).to_contain_text(text)
        await phone.screenshot(path=str(artifacts / "gallery-phone.png"))

        async def carrier_got_it() -> bool:  # the MT as the simulator (the phone's carrier) received it
            return any(mt["text"] == text for mt in await simulator_messages(stack, msisdn))

        await eventually(carrier_got_it, what="the simulator received the MT with the photo link")

        # The link in the MT opens the image on a phone that never signed in to the panel.
        shown = (await phone.locator(".msg.mt").last.inner_text()).strip()
        found = LINK.search(shown)
        assert found is not None and found.group(0) == link
        opened = await phone.goto(found.group(0))
        assert opened is not None and opened.status == 200
        assert opened.headers["content-type"] == "image/jpeg"
        assert opened.headers["x-content-type-options"] == "nosniff"
        await expect(phone.locator("img")).to_have_js_property("naturalWidth", 640)
        await phone.set_viewport_size({"width": 390, "height": 844})
        await phone.screenshot(path=str(artifacts / "gallery-link-390.png"))
    finally:
        for context in contexts:
            await context.close()
