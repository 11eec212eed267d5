"""The manual's message variables at the desk: replies and pushes go out rendered (through the
outbox), the reply box previews what the client will receive and counts that, and an operator without
the MSISDN permission never sees ``{telefono}`` rendered."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from gatewayd.config import ServiceConfig
from gatewayd.outbox import OutboxSettings
from gatewayd.store.messages import MOMessage, MTMessage
from gatewayd.store.subscribers import Subscriber
from panel.settings import PanelSettings
from smpp.text import draft_info

from ..conftest import FAST_ARGON2, HTML, PanelClient, login, page_csrf
from .test_desk_pages import MSISDN, mts, online_with_one_mo

ZONE = ZoneInfo("America/Mexico_City")  # the service's zone, not the panel's nor the server's
TEMPLATE = "m={mensaje} h={host} o={operador} t={telefono} {hora} {fecha} p={pais}"


@pytest.fixture
def desk_panel_settings(sqlite_url: str) -> PanelSettings:
    service = ServiceConfig(name="chat", short_code="997745", timezone=ZONE.key)
    return PanelSettings(
        database_url=sqlite_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        outbox=OutboxSettings(services=(service,), timezone="Europe/Madrid"),
    )


async def the_mo(client: PanelClient) -> MOMessage:
    async with client.runtime.sessionmaker() as session:
        return (await session.execute(select(MOMessage))).scalar_one()


def expected(mo_text: str, at: datetime) -> str:
    local = at.astimezone(ZONE)
    return f"m={mo_text} h=997745 o=movistar t={MSISDN} {local:%H:%M:%S} {local:%d/%m/%Y} p=ES"


async def test_a_reply_goes_out_with_the_seven_variables_rendered(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client, text="quiero tarot")
    token = await page_csrf(desk_client, "/desk")
    sent = await desk_client.post(
        f"/desk/conversations/{conversation_id}/reply", data={"csrf_token": token, "text": TEMPLATE}
    )
    assert sent.status_code == 303
    (mt,) = await mts(desk_client)
    mo = await the_mo(desk_client)
    assert mt.text == expected("quiero tarot", mo.received_at)
    assert mt.in_reply_to_mo_id == mo.id and mt.carrier == "movistar"
    # the operator (no MSISDN permission) sees the MT in the thread with the number masked
    thread = await desk_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert "m=quiero tarot h=997745" in thread.text
    assert MSISDN not in thread.text and "t=" + "\u2022" * len(MSISDN) in thread.text


async def test_the_preview_renders_counts_the_rendered_text_and_masks_the_number(
    desk_client: PanelClient,
) -> None:
    conversation_id = await online_with_one_mo(desk_client, text="hola")
    token = await page_csrf(desk_client, "/desk")
    answer = await desk_client.post(
        "/desk/draft",
        data={"text": TEMPLATE, "conversation_id": str(conversation_id)},
        headers={"x-csrf-token": token},
    )
    body = answer.json()
    rendered = expected("hola", (await the_mo(desk_client)).received_at)
    info = draft_info(rendered, max_segments=10)
    assert (body["segments"], body["units_left"]) == (info.segments, info.units_left)
    assert body["units_left"] != draft_info(TEMPLATE, max_segments=10).units_left  # counted rendered
    assert body["preview"] == rendered.replace(MSISDN, "\u2022" * len(MSISDN))
    assert MSISDN not in answer.text
    # a master holds the MSISDN permission: the preview shows the number
    await desk_client.post("/logout", data={"csrf_token": token})
    await login(desk_client, "marta")
    token = await page_csrf(desk_client, "/desk")
    answer = await desk_client.post(
        "/desk/draft",
        data={"text": TEMPLATE, "conversation_id": str(conversation_id)},
        headers={"x-csrf-token": token},
    )
    assert answer.json()["preview"] == rendered


async def test_a_push_has_no_mo_its_time_is_now_in_the_services_zone(desk_client: PanelClient) -> None:
    await online_with_one_mo(desk_client)
    async with desk_client.runtime.sessionmaker() as session:
        client_id = (await session.execute(select(Subscriber.client_id))).scalar_one()
    token = await page_csrf(desk_client, "/desk/push")
    before = datetime.now(UTC)
    pushed = await desk_client.post(
        "/desk/push", data={"csrf_token": token, "client_id": client_id, "text": TEMPLATE}
    )
    after = datetime.now(UTC)
    assert pushed.status_code == 303
    (mt,) = await mts(desk_client)
    assert mt.text in {expected("", before), expected("", after)}
    listing = await desk_client.get(pushed.headers["location"], headers=HTML)
    assert MSISDN not in listing.text and "m= h=997745 o=movistar" in listing.text


async def test_a_text_too_long_once_rendered_is_refused(desk_client: PanelClient) -> None:
    conversation_id = await online_with_one_mo(desk_client, text="x" * 150)
    token = await page_csrf(desk_client, "/desk")
    template = "{mensaje}" * 12  # 108 characters typed, 1,800 sent: 12 segments, over the 10 allowed
    refused = await desk_client.post(
        f"/desk/conversations/{conversation_id}/reply",
        data={"csrf_token": token, "text": template},
        headers=HTML,
    )
    assert refused.status_code == 400
    assert await mts(desk_client) == []
    async with desk_client.runtime.sessionmaker() as session:
        assert (await session.execute(select(MTMessage))).first() is None
