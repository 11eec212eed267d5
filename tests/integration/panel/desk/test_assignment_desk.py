"""Assignment: round robin among online operators, per-operator limits, pause, release, sweep."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

from sqlalchemy import update

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Presence, get_account_by_username
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from panel.settings import PanelSettings
from tests.waiting import eventually

from ..conftest import HTML, PanelClient, login, page_csrf, serving
from .conftest import (
    at_desk,
    choose,
    deliver_mo,
    desk_app,
    desk_settings,
    holders,
    live_server,
    prepare_desk_store,
)


async def test_two_online_operators_share_20_mos_from_10_subscribers(desk_client: PanelClient) -> None:
    runtime = desk_client.runtime
    assert runtime.bus is not None
    olga = (await desk_client.account("olga")).id
    otto = (await desk_client.account("otto")).id
    async with (
        at_desk(desk_client, "olga", Presence.ONLINE),
        at_desk(desk_client, "otto", Presence.ONLINE),
        runtime.bus.subscribe(f"{runtime.bus.topics.prefix}/conversation/+/assigned") as seen,
    ):
        for round_ in range(2):
            for subscriber in range(10):
                msisdn = f"3460000{subscriber:04d}"
                await deliver_mo(runtime.sessionmaker, runtime.bus, msisdn, f"msg {round_}")

        async def all_assigned() -> bool:
            held = await holders(runtime.sessionmaker)
            return len(held) == 10 and all(operator is not None for operator in held.values())

        await eventually(all_assigned)
        held = await holders(runtime.sessionmaker)
        assert Counter(held.values()) == {olga: 5, otto: 5}
        payloads = [(await seen.get()).payload for _ in range(10)]
    # Each conversation was handed out once: its second MO stayed with the same operator.
    assert sorted(payload["conversation_id"] for payload in payloads) == sorted(held)
    assert all(held[payload["conversation_id"]] == payload["operator_id"] for payload in payloads)


async def test_the_limit_holds_and_a_closed_conversation_frees_a_slot(
    desk_panel_settings: PanelSettings,
) -> None:
    await prepare_desk_store(desk_panel_settings.database_url, limits={"olga": 2})
    async with (
        MemoryBus() as bus,
        serving(desk_app(desk_panel_settings, desk_settings(), bus)) as client,
        at_desk(client, "olga", Presence.ONLINE) as desk,
    ):
        runtime = client.runtime
        olga = (await client.account("olga")).id
        for subscriber in range(4):
            await deliver_mo(runtime.sessionmaker, bus, f"3461000{subscriber:04d}", "hola")

        async def two_held() -> bool:
            return list((await holders(runtime.sessionmaker)).values()).count(olga) == 2

        await eventually(two_held)
        held = await holders(runtime.sessionmaker)
        assert list(held.values()).count(None) == 2
        first = min(conversation for conversation, operator in held.items() if operator == olga)
        token = await page_csrf(desk, "/desk")
        closed = await desk.post(f"/desk/conversations/{first}/close", data={"csrf_token": token})
        assert closed.status_code == 303
        after = await holders(runtime.sessionmaker)
        assert list(after.values()).count(olga) == 3  # the closed one plus two open
        assert list(after.values()).count(None) == 1


async def test_a_paused_operator_gets_nothing_and_offline_gives_back_what_they_hold(
    desk_client: PanelClient,
) -> None:
    runtime = desk_client.runtime
    olga = (await desk_client.account("olga")).id
    otto = (await desk_client.account("otto")).id
    async with (
        at_desk(desk_client, "olga", Presence.PAUSED) as olga_desk,
        at_desk(desk_client, "otto", Presence.ONLINE) as otto_desk,
    ):
        for subscriber in range(3):
            await deliver_mo(runtime.sessionmaker, runtime.bus, f"3462000{subscriber:04d}", "hola")

        async def three_for_otto() -> bool:
            return list((await holders(runtime.sessionmaker)).values()).count(otto) == 3

        await eventually(three_for_otto)
        await choose(otto_desk, Presence.OFFLINE)
        assert set((await holders(runtime.sessionmaker)).values()) == {None}  # olga is paused
        await choose(olga_desk, Presence.ONLINE)
        assert set((await holders(runtime.sessionmaker)).values()) == {olga}


async def test_the_sweep_assigns_what_no_event_announced(desk_panel_settings: PanelSettings) -> None:
    await prepare_desk_store(desk_panel_settings.database_url)
    engine = create_engine(desk_panel_settings.database_url)
    sessions = session_factory(engine)
    try:
        async with (
            MemoryBus() as bus,
            live_server(desk_app(desk_panel_settings, desk_settings(0.05), bus)) as server,
            PanelClient(base_url=server.url) as browser,
        ):
            assert (await login(browser, "olga")).status_code == 303
            await choose(browser, Presence.ONLINE)
            async with sessions() as session:
                olga = await get_account_by_username(session, "olga")
                assert olga is not None
            await deliver_mo(sessions, None, "34630000001", "sin evento")

            async def assigned() -> bool:
                return set((await holders(sessions)).values()) == {olga.id}

            await eventually(assigned)
    finally:
        await engine.dispose()


async def test_a_long_wait_is_flagged_on_the_desk(desk_client: PanelClient) -> None:
    runtime = desk_client.runtime
    async with at_desk(desk_client, "olga", Presence.ONLINE) as desk:
        late = await deliver_mo(runtime.sessionmaker, runtime.bus, "34640000001", "¿hay alguien?")
        fresh = await deliver_mo(runtime.sessionmaker, runtime.bus, "34640000002", "hola")

        async def both() -> bool:
            return None not in (await holders(runtime.sessionmaker)).values()

        await eventually(both)
        async with runtime.sessionmaker() as session, session.begin():
            await session.execute(
                update(Conversation)
                .where(Conversation.id == late.conversation_id)
                .values(waiting_since=utcnow() - timedelta(minutes=5))
            )
        page = (await desk.get("/desk", headers=HTML)).text
    flagged = re.findall(r'class="queue-item ([^"]*)"\s+data-conversation-id="(\d+)"', page)
    classes = {int(conversation): names.split() for names, conversation in flagged}
    assert "overdue" in classes[late.conversation_id]
    assert "overdue" not in classes[fresh.conversation_id]
    assert 'data-overdue-seconds="60"' in page  # the page flags later ones by itself
