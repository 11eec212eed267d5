"""The simulator's virtual phone in a real browser: behind the control API's Host, Origin and
Content-Type checks, the page still reads the carriers, sends MOs and shows the conversation live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from simulator import Simulator, default_config
from smpp.aio import ESMEConfig, ESMESession
from smpp.pdu import DataSM, DeliverSM, SubmitSM
from smpp.text import decode_text
from tests.e2e.conftest import VIEWPORT

pytestmark = pytest.mark.e2e

MSISDN = "34600111333"
SHORT_CODE = "997745"
REPLY = "Hola, soy Ana"


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(default_config().with_ephemeral_ports()) as running:
        yield running


@pytest.fixture
async def phone(simulator: Simulator, browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=simulator.control_url, viewport=VIEWPORT)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_the_phone_sends_an_mo_and_shows_the_reply(
    simulator: Simulator, phone: Page, artifacts: Path
) -> None:
    received: list[str] = []

    async def answer(pdu: DeliverSM | DataSM) -> int:
        """The chat service: every MO gets a reply."""
        assert isinstance(pdu, DeliverSM)
        received.append(decode_text(pdu.short_message, pdu.data_coding))
        session.submit_nowait(
            SubmitSM(
                source_addr=pdu.destination_addr,
                destination_addr=pdu.source_addr,
                short_message=REPLY.encode(),
            ),
            lambda outcome: None,
        )
        return 0

    config = ESMEConfig(
        host="127.0.0.1", port=simulator.port("movistar"), system_id="echat", password="secret1"
    )
    async with ESMESession(config, answer) as session:
        await phone.goto("/phone")
        await expect(phone.locator("#carrier option")).to_have_count(2)  # GET /api/carriers
        await phone.fill("#msisdn", MSISDN)
        await phone.click("#connect")
        await expect(phone.locator("#status")).to_have_text(f"live: {MSISDN} on movistar")  # /api/events

        await phone.fill("#text", "Hola desde el móvil")
        async with phone.expect_request("**/api/mo") as sent:
            await phone.press("#text", "Enter")  # POST /api/mo, JSON, from the page's own origin
        assert (await (await sent.value).all_headers())["origin"] == simulator.control_url
        await expect(phone.locator(".msg.mo")).to_contain_text("Hola desde el móvil")
        await expect(phone.locator(".msg.mt")).to_contain_text(REPLY)
        await expect(phone.locator("#error")).to_have_text("")

        await phone.fill("#text", "")
        await phone.press("#text", "Enter")  # the API's 4xx reaches the page as its message
        await expect(phone.locator("#error")).to_have_text("text: must not be empty")
        await phone.screenshot(path=str(artifacts / "phone.png"))
    assert received == ["Hola desde el móvil"]
    assert simulator.store.query(destination=MSISDN)[0].pdu.short_message == REPLY.encode()


async def test_a_page_of_another_origin_cannot_drive_the_api(simulator: Simulator, phone: Page) -> None:
    """http://localhost:PORT is another origin than http://127.0.0.1:PORT: what a page there makes the
    browser send to the API (a simple text/plain POST, or a JSON POST after a preflight) is refused."""
    port = simulator.control_port
    await phone.goto(f"http://localhost:{port}/phone")
    await expect(phone.locator("#carrier option")).to_have_count(2)
    outcomes = await phone.evaluate(
        """async (url) => {
            const mo = {carrier: "movistar", from: "34600111444", to: "997745", text: "csrf"};
            const body = JSON.stringify(mo);
            const attempts = [
                {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body},
                {method: "POST", headers: {"Content-Type": "application/json"}, body},
                {method: "PATCH", headers: {"Content-Type": "application/json"}, body: '{"tps": 1}'},
            ];
            const outcomes = [];
            for (const [index, init] of attempts.entries()) {
                const target = index === 2 ? url + "/api/carriers/movistar" : url + "/api/mo";
                try { outcomes.push((await fetch(target, init)).type); }
                catch (error) { outcomes.push("refused"); }
            }
            return outcomes;
        }""",
        simulator.control_url,
    )
    assert outcomes == ["opaque", "refused", "refused"]  # the browser shows a page nothing more
    assert simulator.carrier("movistar").counters.mo_injected == 0
    assert simulator.carrier("movistar").profile.tps is None


@pytest.mark.parametrize(
    ("locale", "texts"),
    [
        (
            "es-ES",
            {
                "title": "Teléfono virtual — simulador de SMSC de eChat",
                "labels": ["Operadora", "Número corto", "Mi número", "Abrir"],
                "send": "Enviar",
                "placeholder": "Escribe un mensaje…",
                "status": f"en línea: {MSISDN} en movistar",
                "receipt": "acuse ",
            },
        ),
        (
            "en-GB",
            {
                "title": "Virtual phone — eChat SMSC simulator",
                "labels": ["Carrier", "Short code", "My number", "Open"],
                "send": "Send",
                "placeholder": "Type a message…",
                "status": f"live: {MSISDN} on movistar",
                "receipt": "receipt ",
            },
        ),
    ],
)
async def test_the_phone_speaks_the_browsers_language_throughout(
    simulator: Simulator, browser: Browser, artifacts: Path, locale: str, texts: dict[str, Any]
) -> None:
    """Every text of the page and of its script (status, receipts) in one language, chosen by
    Accept-Language; the switch under the phone changes it."""

    async def answer(pdu: DeliverSM | DataSM) -> int:
        """The chat service: the MO gets a reply with a receipt (the receipt gets nothing)."""
        assert isinstance(pdu, DeliverSM)
        if pdu.esm_class & 0x04:
            return 0
        reply = SubmitSM(
            source_addr=pdu.destination_addr,
            destination_addr=pdu.source_addr,
            short_message=REPLY.encode(),
            registered_delivery=1,
        )
        session.submit_nowait(reply, lambda outcome: None)
        return 0

    config = ESMEConfig(
        host="127.0.0.1", port=simulator.port("movistar"), system_id="echat", password="secret1"
    )
    context = await browser.new_context(base_url=simulator.control_url, viewport=VIEWPORT, locale=locale)
    try:
        async with ESMESession(config, answer) as session:
            phone = await context.new_page()
            await phone.goto("/phone")
            await expect(phone).to_have_title(texts["title"])
            await expect(phone.locator("header label")).to_contain_text(texts["labels"])
            await expect(phone.locator("#compose button")).to_have_text(texts["send"])
            await expect(phone.locator("#text")).to_have_attribute("placeholder", texts["placeholder"])
            await expect(phone.locator("html")).to_have_attribute("lang", locale[:2])
            await phone.fill("#msisdn", MSISDN)
            await phone.click("#connect")
            await expect(phone.locator("#status")).to_have_text(texts["status"])  # written by the script
            await phone.fill("#text", "hola")
            await phone.press("#text", "Enter")
            await expect(phone.locator(".msg.mt")).to_contain_text(REPLY)
            await expect(phone.locator(".note")).to_contain_text(texts["receipt"])
            await phone.screenshot(path=str(artifacts / f"phone-{locale[:2]}.png"))

        other = "en" if locale.startswith("es") else "es"
        await phone.click(f".languages a[hreflang={other}]")
        await expect(phone.locator("html")).to_have_attribute("lang", other)
        await expect(phone.locator(".languages a[aria-current]")).to_have_attribute("hreflang", other)
    finally:
        await context.close()
