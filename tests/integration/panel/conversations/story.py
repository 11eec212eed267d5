"""The conversations the browser tests read, made the way they happen: MOs stored as the daemon stores
them, an operator answering and pushing from her desk, the MTs sent through the store's claim, submit
results and receipts, a ban between queueing and sending."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayd.mo_message import dedup_key
from gatewayd.store.accounts import Presence
from gatewayd.store.base import utcnow
from gatewayd.store.mt.values import PartResult, ReceiptIn, RetryPolicy
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_subscribers import get_subscriber_by_client_id, set_bans, update_subscriber_details
from gatewayd.store.store import Store
from tests.waiting import eventually

from ..conftest import PanelClient, login, page_csrf
from ..desk.conftest import CARRIER, SHORT_CODE, choose, holders

ANA_NUMBER = "34650000001"  # the returning client
BEA_NUMBER = "34650000002"  # banned after her answer was queued


@dataclass(frozen=True, slots=True)
class Story:
    first: int  # Ana's first conversation (closed): reply UNDELIV, a push
    second: int  # Ana's second conversation (open, waiting)
    third: int  # Bea's conversation, service "citas": its reply refused (ban)
    ana: str  # client IDs
    bea: str
    reply_id: int
    push_id: int
    refused_id: int


def store_of(client: PanelClient) -> Store:
    engine = client.runtime.sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return Store.for_engine(engine)


async def mo(client: PanelClient, msisdn: str, text: str, service: str | None = None) -> tuple[int, str]:
    """An MO stored and announced as the daemon does it; (conversation id, client ID) once assigned."""
    now = utcnow()
    store = store_of(client)
    new = NewMO(
        dedup_key=dedup_key(CARRIER, msisdn, SHORT_CODE, 0, uuid.uuid4().bytes),
        msisdn=msisdn,
        carrier=CARRIER,
        short_code=SHORT_CODE,
        text=text,
        received_at=now,
        country="ES",
        service=service,
    )
    async with store.transaction() as session:
        (stored,) = await store.mos.ingest(session, [new], now)
    bus = client.runtime.bus
    assert bus is not None and stored.conversation_id is not None
    await bus.publish(
        bus.topics.mo(SHORT_CODE),
        {
            "id": stored.mo_id,
            "short_code": SHORT_CODE,
            "carrier": CARRIER,
            "client_id": stored.subscriber.client_id,
            "conversation_id": stored.conversation_id,
        },
    )
    conversation_id = stored.conversation_id

    async def held() -> bool:
        return (await holders(client.runtime.sessionmaker)).get(conversation_id) is not None

    await eventually(held)
    return conversation_id, stored.subscriber.client_id


async def send(client: PanelClient, receipt: str | None) -> list[int]:
    """What the daemon does with the outbox: claim the due MTs, submit them (accepted), then the
    receipt ``receipt`` for each (None: no receipt yet). The ids of the MTs sent."""
    store = store_of(client)
    now = utcnow()
    async with store.transaction() as session:
        claimed = await store.claims.claim(session, "test-daemon", now, limit=50, lease=60)
    results = [
        PartResult(mt.id, 1, 1, mt.carrier, now, now, smsc_message_id=f"smsc-{mt.id}") for mt in claimed.mts
    ]
    async with store.transaction() as session:
        await store.results.record(session, results, now, RetryPolicy())
    if receipt is not None:
        receipts = [ReceiptIn(mt.carrier, f"smsc-{mt.id}", receipt, now) for mt in claimed.mts]
        async with store.transaction() as session:
            await store.receipts.record(session, receipts, now)
    return [mt.id for mt in claimed.mts] + [mt_id for mt_id, _ in claimed.refused]


async def post(browser: PanelClient, path: str, page: str, **form: str) -> str:
    token = await page_csrf(browser, page)
    response = await browser.post(path, data={"csrf_token": token, **form})
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


async def tell(client: PanelClient) -> Story:
    """Olga at her desk: Ana writes, Olga answers (with Ana's number, ``{telefono}``: undeliverable),
    pushes to her, closes; Ana comes back; Bea writes, Olga answers, Bea is banned before it leaves."""
    async with client.another_browser() as olga:
        assert (await login(olga, "olga")).status_code == 303
        await choose(olga, Presence.ONLINE)
        first, ana = await mo(client, ANA_NUMBER, "hola, busco pareja")
        await post(
            olga, f"/desk/conversations/{first}/reply", "/desk", text="Hola, soy Olga. Tu número: {telefono}"
        )
        (reply_id,) = await send(client, "UNDELIV")
        await post(olga, "/desk/push", "/desk/push", client_id=ana, text="Oferta especial para ti")
        (push_id,) = await send(client, None)
        await post(olga, f"/desk/conversations/{first}/close", "/desk")
        second, _ = await mo(client, ANA_NUMBER, "vuelvo a escribir")
        third, bea = await mo(client, BEA_NUMBER, "quiero informacion", service="citas")
        await post(olga, f"/desk/conversations/{third}/reply", "/desk", text="Claro, Bea")
    store = store_of(client)
    async with store.transaction() as session:
        await set_bans(session, [bea], reason="spam", now=utcnow())
    (refused_id,) = await send(client, None)
    return Story(first, second, third, ana, bea, reply_id, push_id, refused_id)


async def set_alias(client: PanelClient, client_id: str, alias: str) -> None:
    async with store_of(client).transaction() as session:
        subscriber = await get_subscriber_by_client_id(session, client_id)
        assert subscriber is not None
        await update_subscriber_details(session, subscriber.id, alias=alias, notes=None)
