"""The desk on a billed service: the client card shows the month's spend, its currency and the state;
the reply box says why it is closed while the client is held, and a reply sent anyway is refused
with the reason (the recipient rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from gatewayd.bus.memory import MemoryBus
from gatewayd.outbox import OutboxSettings
from gatewayd.premium import PremiumSettings
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.messages import MTMessage
from gatewayd.store.premium import PremiumAccount
from panel.settings import PanelSettings
from routing.premium import (
    Billed,
    PremiumState,
    SpendStep,
    StepAction,
    Terms,
    month_end,
    month_of,
    month_start,
)

from ..conftest import FAST_ARGON2, HTML, PanelClient, page_csrf, serving
from .conftest import desk_app, desk_settings, prepare_desk_store
from .test_desk_pages import online_with_one_mo

MADRID = ZoneInfo("Europe/Madrid")
TERMS = Terms(
    price_mo=0,
    price_mt=150,
    currency="GBP",
    provider="Acme",
    billed=Billed.MT,
    notice="{precio} {moneda}",
    acceptance=True,
    zone=MADRID,
    steps=(SpendStep(1000, StepAction.CONFIRM), SpendStep(4000, StepAction.CAP)),
)


@pytest.fixture
async def premium_client(sqlite_url: str) -> AsyncIterator[PanelClient]:
    premium = PremiumSettings(
        terms={"chat": TERMS}, services_by_code={"997745": "chat"}, countries={"chat": "ES"}
    )
    settings = PanelSettings(
        database_url=sqlite_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        outbox=OutboxSettings(premium=premium),
    )
    await prepare_desk_store(sqlite_url)
    async with MemoryBus() as bus, serving(desk_app(settings, desk_settings(), bus)) as client:
        yield client


async def on_billed_service(client: PanelClient, state: PremiumState, spent: int) -> int:
    """A conversation of the billed service ``chat`` with its client in ``state`` having spent ``spent``."""
    conversation_id = await online_with_one_mo(client)
    now = utcnow()
    async with client.runtime.sessionmaker() as session, session.begin():
        await session.execute(update(Conversation).values(service="chat"))
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        held = state in (PremiumState.PAUSED, PremiumState.CAPPED)
        session.add(
            PremiumAccount(
                subscriber_id=conversation.subscriber_id,
                service="chat",
                short_code="997745",
                state=state,
                month=month_of(now, MADRID),
                month_start=month_start(now, MADRID),
                spent=spent,
                steps_passed=1 if held else 0,
                noticed_at=now - timedelta(hours=1),
                held_until=month_end(now, MADRID) if held else None,
                held_since=now - timedelta(minutes=1) if state is not PremiumState.NORMAL else None,
            )
        )
    return conversation_id


async def test_a_paused_client_shows_spend_and_state_and_closes_the_reply_box(
    premium_client: PanelClient,
) -> None:
    conversation_id = await on_billed_service(premium_client, PremiumState.PAUSED, 1050)
    page = await premium_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert page.status_code == 200
    card = page.text.split('id="card-title"', 1)[1]
    assert '<dd class="premium-spend">10,50\xa0GBP</dd>' in card
    assert "Pausado hasta que el cliente confirme" in card  # olga reads the desk in Spanish
    held = page.text.split('id="reply-held"', 1)[1].split("</div>", 1)[0]
    assert "disabled" in held and "SI / YES" in held
    assert 'action="/desk/conversations/' + str(conversation_id) + '/reply"' not in page.text
    # a reply posted anyway (an old tab) is refused by the recipient rule, with the reason
    token = await page_csrf(premium_client, f"/desk?c={conversation_id}")
    sent = await premium_client.post(
        f"/desk/conversations/{conversation_id}/reply", data={"csrf_token": token, "text": "hola"}
    )
    assert sent.status_code == 409
    assert "el chat está en pausa hasta que el cliente confirme el gasto" in sent.text
    async with premium_client.runtime.sessionmaker() as session:
        assert list((await session.execute(select(MTMessage))).scalars()) == []


async def test_a_client_in_good_standing_gets_the_reply_box_and_is_charged(
    premium_client: PanelClient,
) -> None:
    conversation_id = await on_billed_service(premium_client, PremiumState.NORMAL, 300)
    page = await premium_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert '<dd class="premium-spend">3,00\xa0GBP</dd>' in page.text and 'id="reply-held"' not in page.text
    assert "state-normal" in page.text
    token = await page_csrf(premium_client, f"/desk?c={conversation_id}")
    sent = await premium_client.post(
        f"/desk/conversations/{conversation_id}/reply", data={"csrf_token": token, "text": "hola"}
    )
    assert sent.status_code == 303
    async with premium_client.runtime.sessionmaker() as session:
        (mt,) = (await session.execute(select(MTMessage))).scalars()
        account = (await session.execute(select(PremiumAccount))).scalar_one()
    assert mt.charge == 150 and account.spent == 450
    shown = await premium_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert '<dd class="premium-spend">4,50\xa0GBP</dd>' in shown.text


async def test_a_capped_client(premium_client: PanelClient) -> None:
    conversation_id = await on_billed_service(premium_client, PremiumState.CAPPED, 4000)
    page = await premium_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert "40,00\xa0GBP" in page.text and "Tope mensual de gasto alcanzado" in page.text
    assert "el cliente ha llegado al tope de gasto de este mes" in page.text.split('id="reply-held"', 1)[1]
