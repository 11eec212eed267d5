"""Presence follows the operator's live session and desk (issue 9, item 7). An operator who signs out,
whose session ends, who is locked or whose desk closed longer ago than the grace gets no new
conversation, and those they hold go back to the queue and to an operator who is there. On SQLite and
PostgreSQL; the race between several panels on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echat.cli import build_parser
from echat.users import handle_user_command
from gatewayd.bus import EventBus, create_bus
from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Account, Presence, WebSession, get_account_by_username
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine, session_factory
from panel.auth.admin import user_lock
from panel.settings import PanelSettings
from plugins.desk.service import assignment_service
from tests.waiting import eventually

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, login, page_csrf, serving
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
from .test_desk_stream import events

# The desk's heartbeat marks it live; the grace is ten heartbeats, so a busy machine never makes a
# live desk look closed.
HEARTBEAT = 0.3
GRACE = 3.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await prepare_desk_store(database_url)
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def panel_settings(url: str) -> PanelSettings:
    return PanelSettings(database_url=url, secure_cookies=False, argon2=FAST_ARGON2)


async def account(sessions: async_sessionmaker[AsyncSession], username: str) -> Account:
    async with sessions() as session:
        found = await get_account_by_username(session, username)
        assert found is not None
        return found


async def held_by(sessions: async_sessionmaker[AsyncSession], operator_id: int) -> set[int]:
    return {
        conversation for conversation, holder in (await holders(sessions)).items() if holder == operator_id
    }


async def three_for(sessions: async_sessionmaker[AsyncSession], bus: EventBus, operator_id: int) -> set[int]:
    """Three clients write; their conversations go to ``operator_id`` (the only one online yet)."""
    for number in range(3):
        await deliver_mo(sessions, bus, f"3469100{number:04d}", "hola")

    async def three() -> bool:
        return len(await held_by(sessions, operator_id)) == 3

    await eventually(three)
    return await held_by(sessions, operator_id)


async def moved_to(
    sessions: async_sessionmaker[AsyncSession], conversations: set[int], operator_id: int
) -> None:
    async def all_moved() -> bool:
        return conversations <= await held_by(sessions, operator_id)

    await eventually(all_moved, within=15)


async def a_new_client_goes_to(
    sessions: async_sessionmaker[AsyncSession], bus: EventBus, operator_id: int
) -> None:
    fresh = await deliver_mo(sessions, bus, "34691999999", "¿hay alguien?")

    async def assigned() -> bool:
        return (await holders(sessions)).get(fresh.conversation_id or 0) is not None

    await eventually(assigned)
    assert (await holders(sessions))[fresh.conversation_id or 0] == operator_id


@dataclass(slots=True)
class Desks:
    client: PanelClient
    olga: PanelClient
    otto: PanelClient
    olga_id: int
    otto_id: int
    olga_holds: set[int]


@asynccontextmanager
async def olga_holds_three(
    sessions: async_sessionmaker[AsyncSession], url: str, bus: MemoryBus, sweep_interval: float = 3600.0
) -> AsyncIterator[Desks]:
    """Olga online at her desk holds three conversations; then Otto comes online at his."""
    app = desk_app(panel_settings(url), desk_settings(sweep_interval=sweep_interval), bus)
    async with serving(app) as client, at_desk(client, "olga", Presence.ONLINE) as olga:
        olga_id = (await client.account("olga")).id
        held = await three_for(sessions, bus, olga_id)
        async with at_desk(client, "otto", Presence.ONLINE) as otto:
            otto_id = (await client.account("otto")).id
            yield Desks(client, olga, otto, olga_id, otto_id, held)


async def test_signing_out_hands_the_conversations_to_an_operator_who_is_there(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with MemoryBus() as bus, olga_holds_three(sessions, database_url, bus) as desks:
        token = await page_csrf(desks.olga, "/desk")
        assert (await desks.olga.post("/logout", data={"csrf_token": token})).status_code == 303
        # No sweep runs (an hour apart): the sign-out's event does it.
        await moved_to(sessions, desks.olga_holds, desks.otto_id)
        await a_new_client_goes_to(sessions, bus, desks.otto_id)
        assert (await account(sessions, "olga")).presence is Presence.OFFLINE


async def test_an_expired_session_hands_the_conversations_on(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with MemoryBus() as bus, olga_holds_three(sessions, database_url, bus, 0.1) as desks:
        async with sessions() as session, session.begin():
            await session.execute(
                update(WebSession)
                .where(WebSession.account_id == desks.olga_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        await moved_to(sessions, desks.olga_holds, desks.otto_id)
        await a_new_client_goes_to(sessions, bus, desks.otto_id)


async def test_a_locked_operator_hands_the_conversations_on(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with MemoryBus() as bus, olga_holds_three(sessions, database_url, bus, 0.1) as desks:
        # `gatewayd user lock` from another process, with no bus that reaches this panel: the sweep
        # finds the lock.
        assert await user_lock(database_url, "olga", "audit") == 1
        await moved_to(sessions, desks.olga_holds, desks.otto_id)
        await a_new_client_goes_to(sessions, bus, desks.otto_id)
        assert (await account(sessions, "olga")).presence is Presence.OFFLINE


async def desk_seen_at(sessions: async_sessionmaker[AsyncSession], username: str) -> float:
    seen = (await account(sessions, username)).desk_seen_at
    assert seen is not None
    return seen.timestamp()


async def test_a_desk_closed_past_the_grace_hands_the_conversations_on(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    desk = desk_settings(sweep_interval=0.1, heartbeat=HEARTBEAT, presence_grace=GRACE)
    async with (
        MemoryBus() as bus,
        live_server(desk_app(panel_settings(database_url), desk, bus)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as olga,
        httpx.AsyncClient(base_url=server.url, timeout=10) as otto,
    ):
        assert (await login(olga, "olga")).status_code == 303
        await choose(olga, Presence.ONLINE)
        olga_id = (await account(sessions, "olga")).id
        otto_id = (await account(sessions, "otto")).id
        async with olga.stream("GET", "/desk/events") as olga_stream:
            # Kept referenced: a reader dropped and collected would close the connection.
            olga_events = events(olga_stream.aiter_lines())
            assert (await anext(olga_events))[0] == "ready"
            opened = await desk_seen_at(sessions, "olga")
            held = await three_for(sessions, bus, olga_id)
            assert (await login(otto, "otto")).status_code == 303
            await choose(otto, Presence.ONLINE)
            async with otto.stream("GET", "/desk/events") as otto_stream:
                otto_events = events(otto_stream.aiter_lines())
                assert (await anext(otto_events))[0] == "ready"

                async def kept_live_past_a_grace() -> bool:
                    return await desk_seen_at(sessions, "olga") > opened + GRACE

                # Her open desk keeps her there however long it stays open...
                await eventually(kept_live_past_a_grace, within=15)
                assert await held_by(sessions, olga_id) == held
                await olga_stream.aclose()  # ...the browser closes
                await moved_to(sessions, held, otto_id)
                await a_new_client_goes_to(sessions, bus, otto_id)
    assert (await account(sessions, "olga")).presence is Presence.OFFLINE


async def test_locking_ends_the_operators_desk_stream_at_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """No bus reaches the panel from the locking command: the sweep finds the lock and says so on the
    panel's bus, and the stream ends long before its heartbeat (15 s) would have checked."""
    async with (
        MemoryBus() as bus,
        live_server(desk_app(panel_settings(database_url), desk_settings(sweep_interval=0.2), bus)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as olga,
    ):
        assert (await login(olga, "olga")).status_code == 303
        await choose(olga, Presence.ONLINE)
        async with olga.stream("GET", "/desk/events") as stream:
            received = events(stream.aiter_lines())
            assert (await anext(received))[0] == "ready"
            await user_lock(database_url, "olga", "audit")
            async with asyncio.timeout(5):
                remaining = [name async for name, _ in received]
    assert remaining == ["signout"]


async def test_the_lock_command_reaches_the_desks_over_mqtt_at_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    """Panel and `gatewayd user lock` in separate processes share the broker: the command's event ends
    the stream and hands the conversations on at once, with no sweep running."""
    lock = build_parser().parse_args(["user", "lock", "olga", "--reason", "audit"])
    panel_bus = create_bus(mqtt_url, topic_prefix=topic_prefix, client_id=f"{topic_prefix}-panel")
    async with (
        panel_bus,
        live_server(desk_app(panel_settings(database_url), desk_settings(), panel_bus)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as olga,
        httpx.AsyncClient(base_url=server.url, timeout=30) as otto,
    ):
        async with asyncio.timeout(10):
            await panel_bus.wait_connected()
        assert (await login(olga, "olga")).status_code == 303
        await choose(olga, Presence.ONLINE)
        olga_id = (await account(sessions, "olga")).id
        held = await three_for(sessions, panel_bus, olga_id)
        assert (await login(otto, "otto")).status_code == 303
        await choose(otto, Presence.ONLINE)
        async with olga.stream("GET", "/desk/events") as stream:
            received = events(stream.aiter_lines())
            assert (await anext(received))[0] == "ready"
            cli_bus = create_bus(mqtt_url, topic_prefix=topic_prefix, client_id=f"{topic_prefix}-cli")
            assert await handle_user_command(lock, database_url, cli_bus) == 0
            async with asyncio.timeout(5):
                remaining = [name async for name, _ in received]
            assert remaining[-1] == "signout"
        await moved_to(sessions, held, (await account(sessions, "otto")).id)


async def test_two_panels_hand_a_leaving_operators_conversations_on_once(pg_url: str) -> None:
    """Both panels hear the sign-out and settle at once: each conversation goes back and on once."""
    await prepare_desk_store(pg_url)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    settings = panel_settings(pg_url)
    try:
        async with (
            MemoryBus() as bus,
            serving(desk_app(settings, desk_settings(), bus)) as first,
            serving(desk_app(settings, desk_settings(), bus)) as second,
            at_desk(first, "olga", Presence.ONLINE) as olga,
        ):
            olga_id = (await first.account("olga")).id
            held = await three_for(sessions, bus, olga_id)
            async with (
                at_desk(second, "otto", Presence.ONLINE),
                bus.subscribe(f"{bus.topics.prefix}/conversation/+/assigned") as seen,
            ):
                otto_id = (await first.account("otto")).id
                token = await page_csrf(olga, "/desk")
                assert (await olga.post("/logout", data={"csrf_token": token})).status_code == 303
                await moved_to(sessions, held, otto_id)
                changes = [(await asyncio.wait_for(seen.get(), 10)).payload for _ in range(6)]
                # Both panels pass over everything once more: nothing changes hands again.
                for panel in (first, second):
                    await assignment_service(panel.runtime).sweep()
                assert seen.take_queued() == []
        moves = Counter((change["conversation_id"], change["operator_id"]) for change in changes)
        assert moves == Counter({**{(c, None): 1 for c in held}, **{(c, otto_id): 1 for c in held}})
    finally:
        await engine.dispose()


async def test_a_password_change_ends_the_other_sessions_desk_streams_at_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Olga changes her password in one browser: her desk open in another ends at once (its session
    was revoked), not at its next heartbeat (15 s); she stays at the desk in the first."""
    async with (
        MemoryBus() as bus,
        live_server(desk_app(panel_settings(database_url), desk_settings(), bus)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as laptop,
        httpx.AsyncClient(base_url=server.url, timeout=30) as phone,
    ):
        for browser in (laptop, phone):
            assert (await login(browser, "olga")).status_code == 303
        await choose(laptop, Presence.ONLINE)
        async with phone.stream("GET", "/desk/events") as stream:
            received = events(stream.aiter_lines())
            assert (await anext(received))[0] == "ready"
            token = await page_csrf(laptop, "/profile")
            form = {
                "csrf_token": token,
                "current_password": PASSWORD,
                "new_password": "another good password",
                "confirm_password": "another good password",
            }
            assert (await laptop.post("/profile/password", data=form)).status_code == 200
            async with asyncio.timeout(5):
                remaining = [name async for name, _ in received]
        assert remaining == ["signout"]
        assert (await account(sessions, "olga")).presence is Presence.ONLINE


async def test_signing_in_as_someone_else_ends_the_first_operators_desk_at_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """One browser, one signed-in user: Otto signing in where Olga's desk is open ends her session,
    her open stream at once, and hands her conversations on (to Otto, the one now at the desk)."""
    async with (
        MemoryBus() as bus,
        live_server(desk_app(panel_settings(database_url), desk_settings(), bus)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as browser,
    ):
        assert (await login(browser, "olga")).status_code == 303
        await choose(browser, Presence.ONLINE)
        olga_id = (await account(sessions, "olga")).id
        held = await three_for(sessions, bus, olga_id)
        async with browser.stream("GET", "/desk/events") as stream:
            received = events(stream.aiter_lines())
            assert (await anext(received))[0] == "ready"
            # A signed-in browser is sent away from the login page: the form posts from another tab.
            form = {"csrf_token": await page_csrf(browser, "/desk"), "username": "otto", "password": PASSWORD}
            assert (await browser.post("/login", data=form)).status_code == 303
            async with asyncio.timeout(5):
                remaining = [name async for name, _ in received]
        assert remaining == ["signout"]
        await choose(browser, Presence.ONLINE)
        await moved_to(sessions, held, (await account(sessions, "otto")).id)
