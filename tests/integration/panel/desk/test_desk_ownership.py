"""A conversation belongs to its operator: another operator can neither read nor answer it, unless
they hold operator.see_others, which lets them read it but still not answer or close it."""

from __future__ import annotations

from sqlalchemy import func, select

from gatewayd.store.accounts import Presence, get_account_by_username
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.messages import MTMessage
from gatewayd.store.subscribers import Subscriber
from panel.auth.accounts import set_permissions
from panel.auth.permissions import OPERATOR_MODE
from plugins.desk.permissions import OPERATOR_SEE_OTHERS, PUSH_SEND
from tests.waiting import eventually

from ..conftest import HTML, PanelClient, login, page_csrf
from .conftest import at_desk, deliver_mo, holders

MSISDN = "34650000777"


async def olgas_conversation(client: PanelClient) -> tuple[int, str]:
    """A conversation handed to olga (the only operator online, at her desk in her own browser), and
    its client ID."""
    stored = await deliver_mo(client.runtime.sessionmaker, client.runtime.bus, MSISDN, "solo para Olga")
    conversation_id = stored.conversation_id
    assert conversation_id is not None
    olga = await client.account("olga")

    async def held_by_olga() -> bool:
        return (await holders(client.runtime.sessionmaker)).get(conversation_id) == olga.id

    await eventually(held_by_olga)
    return conversation_id, stored.subscriber.client_id


Snapshot = tuple[int, int | None, ConversationStatus, str | None]


async def state(client: PanelClient, conversation_id: int) -> Snapshot:
    """(MTs queued, holder, status, client alias): what a refused request must leave untouched."""
    async with client.runtime.sessionmaker() as session:
        mts = int((await session.execute(select(func.count()).select_from(MTMessage))).scalar_one())
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None
        alias = (
            await session.execute(select(Subscriber.alias).where(Subscriber.id == conversation.subscriber_id))
        ).scalar_one()
        return mts, conversation.assigned_operator_id, conversation.status, alias


async def try_everything(client: PanelClient, conversation_id: int, client_id: str) -> dict[str, int]:
    token = await page_csrf(client, "/desk")
    read = await client.get(f"/desk?c={conversation_id}", headers=HTML)
    reply = await client.post(
        f"/desk/conversations/{conversation_id}/reply",
        data={"csrf_token": token, "text": "me cuelo"},
        headers=HTML,
    )
    close = await client.post(
        f"/desk/conversations/{conversation_id}/close", data={"csrf_token": token}, headers=HTML
    )
    details = await client.post(
        f"/desk/clients/{client_id}/details",
        headers=HTML,
        data={"csrf_token": token, "conversation_id": str(conversation_id), "alias": "Intruso"},
    )
    return {
        "read": read.status_code,
        "reply": reply.status_code,
        "close": close.status_code,
        "details": details.status_code,
    }


async def test_another_operator_can_neither_read_nor_answer(desk_client: PanelClient) -> None:
    async with at_desk(desk_client, "olga", Presence.ONLINE):
        await otto_tries_olgas_conversation(desk_client)


async def otto_tries_olgas_conversation(desk_client: PanelClient) -> None:
    conversation_id, client_id = await olgas_conversation(desk_client)
    before = await state(desk_client, conversation_id)
    assert (await login(desk_client, "otto")).status_code == 303
    statuses = await try_everything(desk_client, conversation_id, client_id)
    assert statuses == {"read": 403, "reply": 403, "close": 404, "details": 403}
    assert await state(desk_client, conversation_id) == before
    page = await desk_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert "solo para Olga" not in page.text and client_id not in page.text
    desk = await desk_client.get("/desk", headers=HTML)
    assert f'data-conversation-id="{conversation_id}"' not in desk.text  # not in otto's queue either


async def test_see_others_reads_but_still_cannot_answer_or_close(desk_client: PanelClient) -> None:
    async with at_desk(desk_client, "olga", Presence.ONLINE):
        await otto_sees_olgas_conversation(desk_client)


async def otto_sees_olgas_conversation(desk_client: PanelClient) -> None:
    conversation_id, client_id = await olgas_conversation(desk_client)
    async with desk_client.runtime.sessionmaker() as session, session.begin():
        otto = await get_account_by_username(session, "otto")
        assert otto is not None
        grants = [OPERATOR_MODE, PUSH_SEND, OPERATOR_SEE_OTHERS]
        await set_permissions(otto, desk_client.runtime.permissions, grants)
    mts, holder, status, _ = await state(desk_client, conversation_id)
    assert (await login(desk_client, "otto")).status_code == 303
    statuses = await try_everything(desk_client, conversation_id, client_id)
    assert statuses == {"read": 200, "reply": 403, "close": 404, "details": 303}
    page = await desk_client.get(f"/desk?c={conversation_id}", headers=HTML)
    assert "solo para Olga" in page.text
    assert f'action="/desk/conversations/{conversation_id}/reply"' not in page.text  # read-only thread
    assert MSISDN not in page.text  # seeing others' chats does not reveal phone numbers
    # Nothing was sent or closed; the client card edit (allowed by see_others) is the only change.
    assert await state(desk_client, conversation_id) == (mts, holder, status, "Intruso")
