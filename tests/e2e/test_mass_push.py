"""Issue 13's acceptance for the mass push (1.6): clients built through the simulator (MOs in, pushes
out, some answered), a master creates a campaign for those who answered one of their last 2 pushes in
a real browser, sees the audience size and the preview, sends it, pauses it, resumes it and watches
its progress live; exactly that set receives it at the simulator, once each, and nobody who opted
out, was banned or did not answer."""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from gatewayd.campaigns import CampaignSender, carrier_tps
from gatewayd.store.accounts import Role
from gatewayd.store.base import utcnow
from gatewayd.store.campaigns import Campaign, CampaignStatus
from gatewayd.store.repo_subscribers import get_subscriber_by_msisdn, set_bans
from tests.e2e.conftest import VIEWPORT
from tests.e2e.stack import PASSWORD, Stack, StackOptions, add_operator, desk_plugins
from tests.e2e.test_operator_desk import inject_mo, simulator_messages, subscriber, wait_for_mt
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

MASTER = "marta"
TEXT = "Oferta de {host}: vuelve al chat"
RENDERED = "Oferta de 997745: vuelve al chat"


async def mos_stored(stack: Stack, msisdn: str, count: int) -> None:
    async def stored() -> bool:
        async with stack.sessions() as session:
            found = await get_subscriber_by_msisdn(session, msisdn)
        return found is not None and found.mo_count >= count

    await eventually(stored, what=f"{count} MOs of {msisdn} stored")


async def push_all(stack: Stack, msisdns: list[str], round_: int) -> None:
    """An operator's push to each (kind push), waited for at the simulator."""
    text = f"Push {round_} {uuid.uuid4().hex[:4]}"
    for msisdn in msisdns:
        await stack.daemon.queue_mt(msisdn, text)
    for msisdn in msisdns:
        await wait_for_mt(stack, msisdn, text)


async def answer_all(stack: Stack, msisdns: list[str], counts: dict[str, int], text: str = "vale") -> None:
    for msisdn in msisdns:
        await inject_mo(stack, msisdn, f"{text} {uuid.uuid4().hex[:4]}")
        counts[msisdn] += 1
    for msisdn in msisdns:
        await mos_stored(stack, msisdn, counts[msisdn])


async def campaign_texts(stack: Stack, msisdn: str) -> int:
    return sum(1 for message in await simulator_messages(stack, msisdn) if message.get("text") == RENDERED)


async def the_campaign(stack: Stack) -> Campaign:
    async with stack.sessions() as session:
        found = (await session.scalars(select(Campaign))).one()
    return found


async def fed_all_settled(stack: Stack) -> None:
    """Until every MT the campaign queued got its receipt."""

    async def settled() -> bool:
        campaign = await the_campaign(stack)
        return campaign.queued + campaign.sent == 0

    await eventually(settled, what="every MT of the campaign got its receipt")


def the_sender(stack: Stack) -> CampaignSender:
    assert stack.daemon.campaigns is not None
    return stack.daemon.campaigns


def hold_the_feeding(stack: Stack) -> None:
    """The daemon's sender goes on starting, following and finishing campaigns but feeds nobody: no
    carrier has room (until :func:`release_the_feeding`)."""
    sender = the_sender(stack)
    sender.settings = dataclasses.replace(sender.settings, carrier_tps={})


def release_the_feeding(stack: Stack) -> None:
    sender = the_sender(stack)
    sender.settings = dataclasses.replace(
        sender.settings, carrier_tps=carrier_tps(stack.daemon.config.carriers)
    )


async def feed_one(stack: Stack) -> None:
    """One recipient fed by a sender of its own: a new pace bucket holds one MT at 1 SMS/s."""
    store, outbox = stack.daemon.store, stack.daemon.outbox
    assert store is not None and outbox is not None
    settings = dataclasses.replace(
        the_sender(stack).settings, carrier_tps=carrier_tps(stack.daemon.config.carriers)
    )
    assert await CampaignSender(store, outbox, settings).step()


async def sign_in_master(page: Page) -> None:
    await page.goto("/admin/campaigns")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#username", MASTER)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Push masivo")


async def test_a_campaign_reaches_exactly_who_answered_the_last_two_pushes(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    await add_operator(stack.sessions, desk_plugins(StackOptions()), 5, username=MASTER, role=Role.MASTER)
    last = [subscriber() for _ in range(4)]  # answer the last push
    before_last = [subscriber() for _ in range(2)]  # answer the push before it
    older, silent, opted_out, banned = (subscriber() for _ in range(4))
    audience = last + before_last
    everyone = [*audience, older, silent, opted_out, banned]
    counts = dict.fromkeys(everyone, 0)
    await answer_all(stack, everyone, counts, "hola")  # they first write
    await push_all(stack, [older], 0)
    await answer_all(stack, [older], counts)  # answered a push that will not be one of the last two
    await push_all(stack, everyone, 1)
    await answer_all(stack, before_last, counts)
    await push_all(stack, everyone, 2)
    await answer_all(stack, [*last, banned], counts)
    await answer_all(stack, [opted_out], counts, "BAJA")
    async with stack.sessions() as session, session.begin():
        client = await get_subscriber_by_msisdn(session, banned)
        assert client is not None
        await set_bans(session, [client.client_id], reason="abuso", now=utcnow())

    context = await browser.new_context(
        base_url=stack.panel_url, viewport=VIEWPORT, locale="es-ES", timezone_id="Europe/Madrid"
    )
    try:
        page = await context.new_page()
        await sign_in_master(page)
        await expect(page.locator(".empty")).to_have_text("Aún no hay campañas.")
        await page.screenshot(path=str(artifacts / "mass-push-empty.png"), full_page=True)
        async with page.expect_navigation():
            await page.click("text=Nueva campaña")
        await page.fill("#name", "Vuelta al chat")
        await page.fill("#last_pushes", "2")
        await page.uncheck("input[name=include_new]")
        await expect(page.locator("#audience-size")).to_have_text("Audiencia: 6 clientes")
        await page.fill("#campaign-text", TEXT)
        await expect(page.locator("#draft-preview-text")).to_have_text(RENDERED)  # for a sample client
        await expect(page.locator("#draft-counter")).to_contain_text("1 SMS")
        await page.fill("#tps", "1")
        await page.check("input[name=ignore_quiet_hours]")  # the test may run at night in Madrid
        await page.screenshot(path=str(artifacts / "mass-push-new.png"), full_page=True)
        # The daemon's sender starts the campaign but feeds only the two the test lets through, so it
        # cannot finish before the pause whatever the runner's load.
        hold_the_feeding(stack)
        async with page.expect_navigation():
            await page.click("button[value=send]")
        await expect(page.locator(".flash.ok")).to_contain_text("La campaña está en marcha")  # sent now
        await expect(page.locator("[data-figure=pending]")).to_have_text("6", timeout=15_000)
        figure = page.locator("[data-figure=delivered]")
        # live progress: the figures change on the open page as the SMS are delivered
        await feed_one(stack)
        await expect(figure).to_have_text("1", timeout=15_000)
        await feed_one(stack)
        await expect(figure).to_have_text("2", timeout=15_000)
        await page.screenshot(path=str(artifacts / "mass-push-running.png"), full_page=True)

        async with page.expect_navigation():
            await page.click("form[data-action=pause] button")
        await expect(page.locator("#campaign-status")).to_have_text("En pausa")
        # a pass of the daemon's sender, free to feed again, feeds nothing while it is paused
        release_the_feeding(stack)
        await fed_all_settled(stack)
        await the_sender(stack).step()
        paused = await the_campaign(stack)
        assert paused.status is CampaignStatus.PAUSED and paused.pending == 4
        assert sum([await campaign_texts(stack, msisdn) for msisdn in audience]) == 2
        await page.screenshot(path=str(artifacts / "mass-push-paused.png"), full_page=True)

        async with page.expect_navigation():
            await page.click("form[data-action=resume] button")
        await expect(page.locator("#campaign-status")).to_have_text("Terminada", timeout=20_000)
        await expect(figure).to_have_text("6", timeout=15_000)
        await expect(page.locator("[data-figure=pending]")).to_have_text("0")
        await page.screenshot(path=str(artifacts / "mass-push-finished.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(artifacts / "mass-push-finished-390.png"), full_page=True)
        await page.set_viewport_size(VIEWPORT)
        await page.goto("/admin/campaigns")
        await expect(page.locator("tr", has_text="Vuelta al chat")).to_contain_text("Terminada")
        await page.screenshot(path=str(artifacts / "mass-push-list.png"), full_page=True)
    finally:
        await context.close()

    for msisdn in audience:
        assert await campaign_texts(stack, msisdn) == 1, msisdn
    for msisdn in (older, silent, opted_out, banned):
        assert await campaign_texts(stack, msisdn) == 0, msisdn
