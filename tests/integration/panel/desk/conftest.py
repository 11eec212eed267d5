"""Desk fixtures: the whole store schema, operators and a master, the panel with the desk plugin on a
MemoryBus, MOs delivered the way the daemon does (stored, then an MO event), a live uvicorn server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from gatewayd.assignment import AssignmentPolicy
from gatewayd.bus.base import EventBus
from gatewayd.bus.memory import MemoryBus
from gatewayd.mo_message import dedup_key
from gatewayd.store import models
from gatewayd.store.accounts import Presence, Role
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.repo_mo import IngestedMO, NewMO
from gatewayd.store.store import Store
from gatewayd.webserver import listening_socket
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.settings import PanelSettings
from plugins import auth, home
from plugins.desk import DeskSettings, build_plugin

from ..conftest import FAST_ARGON2, PASSWORD, PanelClient, login, page_csrf, serving

SHORT_CODE = "997745"
CARRIER = "movistar"
# username -> (role, max open conversations)
DESK_ACCOUNTS = {"olga": (Role.OPERATOR, 5), "otto": (Role.OPERATOR, 5), "marta": (Role.MASTER, 5)}


async def prepare_desk_store(url: str, limits: dict[str, int] | None = None) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(models.metadata.create_all)
        registry = PermissionRegistry.build([auth.plugin, home.plugin, build_plugin()])
        passwords = PasswordPolicy(FAST_ARGON2)
        async with session_factory(engine)() as session, session.begin():
            for username, (role, limit) in DESK_ACCOUNTS.items():
                await create_account(
                    session,
                    passwords,
                    registry,
                    username=username,
                    password=PASSWORD,
                    role=role,
                    display_name=username.title(),
                    language="en" if username == "otto" else "es",
                    max_open_conversations=(limits or {}).get(username, limit),
                )
    finally:
        await engine.dispose()


def desk_settings(
    sweep_interval: float = 3600.0, heartbeat: float = 15.0, presence_grace: float = 40.0
) -> DeskSettings:
    return DeskSettings(
        policy=AssignmentPolicy(
            overdue_after=timedelta(seconds=60),
            sweep_interval=sweep_interval,
            presence_grace=timedelta(seconds=presence_grace),
        ),
        heartbeat=heartbeat,
    )


def desk_app(settings: PanelSettings, desk: DeskSettings, bus: EventBus) -> Starlette:
    return create_app(settings, bus=bus, plugins=[auth.plugin, home.plugin, build_plugin(desk)])


@pytest.fixture
def desk_panel_settings(sqlite_url: str) -> PanelSettings:
    return PanelSettings(database_url=sqlite_url, secure_cookies=False, argon2=FAST_ARGON2)


@pytest.fixture
async def desk_client(desk_panel_settings: PanelSettings) -> AsyncIterator[PanelClient]:
    await prepare_desk_store(desk_panel_settings.database_url)
    async with MemoryBus() as bus, serving(desk_app(desk_panel_settings, desk_settings(), bus)) as client:
        yield client


async def deliver_mo(
    sessions: async_sessionmaker[AsyncSession], bus: EventBus | None, msisdn: str, text: str
) -> IngestedMO:
    """What the daemon does with an MO: store it, commit, publish ``<prefix>/<short code>/mo`` (no
    event when ``bus`` is None: a lost event, which the sweep makes up for)."""
    now = utcnow()
    mo = NewMO(
        dedup_key=dedup_key(CARRIER, msisdn, SHORT_CODE, 0, uuid.uuid4().bytes),
        msisdn=msisdn,
        carrier=CARRIER,
        short_code=SHORT_CODE,
        text=text,
        received_at=now,
        country="ES",
    )
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    store = Store.for_engine(engine)
    async with store.transaction() as session:
        (stored,) = await store.mos.ingest(session, [mo], now)
    assert stored.mo_id is not None
    if bus is None:
        return stored
    await bus.publish(
        bus.topics.mo(SHORT_CODE),
        {  # ids, as the daemon publishes them: the desk reads the text from the database
            "id": stored.mo_id,
            "short_code": SHORT_CODE,
            "carrier": CARRIER,
            "client_id": stored.subscriber.client_id,
            "conversation_id": stored.conversation_id,
            "received_at": now.isoformat(),
        },
    )
    return stored


async def choose(browser: httpx.AsyncClient, presence: Presence) -> None:
    """Sets the signed-in operator's presence with the desk's control."""
    token = await page_csrf(browser, "/desk")
    response = await browser.post("/desk/presence", data={"csrf_token": token, "presence": presence.value})
    assert response.status_code == 303


@asynccontextmanager
async def at_desk(client: PanelClient, username: str, presence: Presence) -> AsyncIterator[PanelClient]:
    """``username`` signed in at a browser of their own, presence set at the desk; the desk counts as
    live for the presence grace (no stream over this transport)."""
    async with client.another_browser() as browser:
        assert (await login(browser, username)).status_code == 303
        await choose(browser, presence)
        yield browser


async def holders(sessions: async_sessionmaker[AsyncSession]) -> dict[int, int | None]:
    async with sessions() as session:
        rows = await session.execute(select(Conversation.id, Conversation.assigned_operator_id))
        return {row.id: row.assigned_operator_id for row in rows}


@dataclass(slots=True)
class LiveServer:
    url: str
    server: uvicorn.Server


@asynccontextmanager
async def live_server(app: Starlette) -> AsyncIterator[LiveServer]:
    """The app served by uvicorn on an ephemeral 127.0.0.1 port (streaming responses need a server)."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="test.panel.uvicorn")
    try:
        async with asyncio.timeout(10):
            while True:
                if server.started:
                    break
                await asyncio.sleep(0.01)
        yield LiveServer(f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        await task
        sock.close()
