"""Panel fixtures: a SQLite store with one account per role, the app with every built-in plugin (auth,
home, desk, services) and the example plugin, an httpx client running the app's lifespan, and sample data for
routes with path parameters (a conversation held by the operator "oscar", its client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

import gatewayd.store.models  # noqa: F401  (registers every table on Base.metadata)
from gatewayd.bus.memory import MemoryBus
from gatewayd.mo_message import dedup_key
from gatewayd.store.accounts import Account, Role, get_account_by_username
from gatewayd.store.base import Base, utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.repo_assignment import touch_desk
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.store import Store
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.auth.sessions import create_session
from panel.runtime import PanelRuntime
from panel.settings import Argon2Params, PanelSettings
from panel.types import Plugin
from plugins import (
    accounts,
    apikeys,
    audit,
    auth,
    campaigns,
    clients,
    conversations,
    desk,
    gallery,
    home,
    monitor,
    reports,
    services,
    webhooks,
)

#: Every built-in plugin, as the panel's entry points list them (the tests add the example plugin).
BUILT_IN_PLUGINS: tuple[Plugin, ...] = (
    auth.plugin,
    desk.plugin,
    home.plugin,
    accounts.plugin,
    clients.plugin,
    conversations.plugin,
    services.plugin,
    audit.plugin,
    monitor.plugin,
    gallery.plugin,
    reports.plugin,
    campaigns.plugin,
    apikeys.plugin,
    webhooks.plugin,
)
EXAMPLE_PLUGINS = Path(__file__).resolve().parents[2] / "plugins_example"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "correct horse battery"
# username -> role; "nadie" is an operator whose grants were all taken away.
ACCOUNTS = {"ana": Role.ADMIN, "marta": Role.MASTER, "oscar": Role.OPERATOR, "nadie": Role.OPERATOR}
EVIL_NAME = "<script>alert('x')</script> Óscar"


async def prepare_store(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        registry = PermissionRegistry.build([*BUILT_IN_PLUGINS, load_example_plugin()])
        passwords = PasswordPolicy(FAST_ARGON2)
        async with session_factory(engine)() as session, session.begin():
            for username, role in ACCOUNTS.items():
                await create_account(
                    session,
                    passwords,
                    registry,
                    username=username,
                    password=PASSWORD,
                    role=role,
                    display_name=EVIL_NAME if username == "oscar" else username.title(),
                    language="en" if username == "marta" else "es",
                    timezone="America/Bogota" if username == "marta" else "Europe/Madrid",
                    permissions=[] if username == "nadie" else None,
                )
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class Samples:
    """Real values for path parameters: a conversation its operator holds, its client and the
    operator's account."""

    conversation_id: int
    client_id: str
    msisdn: str
    account_id: int

    def path(self, template: str) -> str:
        """``/desk/conversations/{conversation_id:id}/reply`` with the sample values put in."""
        values = {
            "conversation_id": str(self.conversation_id),
            "client_id": self.client_id,
            "account_id": str(self.account_id),
            # The gallery's routes: no photo has these (the gallery's own tests use real ones).
            "photo_id": "424242",
            "campaign_id": "424242",
            "key_id": "424242",  # no API key has it
            "token": "n0-such-photo-token-n0-such-photo-token-xyz",
            # The webhooks' routes: no subscription or delivery has these (their own tests use real ones).
            "subscription_id": "424242",
            "delivery_id": "424243",
        }
        return _PATH_PARAMETER.sub(lambda found: values[found.group(1)], template)


_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
SAMPLE_OPERATOR = "oscar"


async def seed_conversation(url: str, operator: str, msisdn: str, text: str = "hola") -> Samples:
    """An MO stored as the daemon stores it, its conversation handed to ``operator``, who is at the
    desk in a browser of their own (a live session, the desk just seen): it stays theirs."""
    engine = create_engine(url)
    try:
        now = utcnow()
        mo = NewMO(
            dedup_key=dedup_key("movistar", msisdn, "997745", 0, uuid.uuid4().bytes),
            msisdn=msisdn,
            carrier="movistar",
            short_code="997745",
            text=text,
            received_at=now,
            country="ES",
        )
        store = Store.for_engine(engine)
        async with store.transaction() as session:
            (stored,) = await store.mos.ingest(session, [mo], now)
            holder = await get_account_by_username(session, operator)
            assert stored.conversation_id is not None and holder is not None
            await session.execute(
                update(Conversation)
                .where(Conversation.id == stored.conversation_id)
                .values(assigned_operator_id=holder.id)
            )
            await create_session(session, holder, PanelSettings(database_url=url), ip=None, user_agent=None)
            await touch_desk(session, holder.id, now)
        return Samples(stored.conversation_id, stored.subscriber.client_id, msisdn, holder.id)
    finally:
        await engine.dispose()


@pytest.fixture
async def samples(app: Starlette, settings: PanelSettings) -> Samples:
    return await seed_conversation(settings.database_url, SAMPLE_OPERATOR, "34611000001")


def load_example_plugin() -> Plugin:
    import echat_notes  # found through the example folder put on sys.path

    found = echat_notes.plugin
    assert isinstance(found, Plugin)
    return found


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))


@pytest.fixture
def settings(sqlite_url: str) -> PanelSettings:
    return PanelSettings(
        database_url=sqlite_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        login_free_failures=2,
        login_delay_seconds=1.0,
        login_delay_max_seconds=4.0,
        ip_max_failures=6,
        ip_window_minutes=10,
        refusal_pause_seconds=0,  # the pause has its own test (test_login.py)
    )


@pytest.fixture
async def app(settings: PanelSettings, example_on_path: None) -> Starlette:
    await prepare_store(settings.database_url)
    return create_app(
        settings,
        bus_factory=memory_bus,
        plugins=[*BUILT_IN_PLUGINS, "echat_notes:plugin"],
    )


def memory_bus(url: str) -> MemoryBus:
    assert url == "memory://"
    return MemoryBus()


@asynccontextmanager
async def serving(
    app: Starlette, base_url: str = "http://testserver", client_host: str = "127.0.0.1"
) -> AsyncIterator[PanelClient]:
    """The app's lifespan around an httpx client, state handed to each request as a server does
    (``https://...`` for a panel behind TLS: the client then sends Secure cookies back; the client's
    address as a proxy header may have set it)."""
    async with app.router.lifespan_context(app) as state:
        assert state is not None

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state, client=(client_host, 123))
        async with PanelClient(transport=transport, base_url=base_url) as client:
            client.runtime = state["panel"]
            client.asgi = transport
            yield client


class PanelClient(httpx.AsyncClient):
    runtime: PanelRuntime
    asgi: httpx.ASGITransport

    def another_browser(self) -> PanelClient:
        """A client with cookies of its own on the same app: another person at another browser."""
        browser = PanelClient(transport=self.asgi, base_url=self.base_url)
        browser.runtime = self.runtime
        browser.asgi = self.asgi
        return browser

    async def account(self, username: str) -> Account:
        async with self.runtime.sessionmaker() as session:
            found = await get_account_by_username(session, username)
            assert found is not None
            return found


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[PanelClient]:
    async with serving(app) as test_client:
        yield test_client


HTML = {"accept": "text/html"}
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def page_csrf(client: httpx.AsyncClient, path: str = "/login") -> str:
    response = await client.get(path, headers=HTML)
    found = _CSRF_META.search(response.text)
    assert found is not None, f"no csrf meta on {path}: {response.status_code}"
    return found.group(1)


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    token = await page_csrf(client, "/login")
    form = {"username": username, "password": password, "csrf_token": token, **extra}
    return await client.post("/login", data=form, headers=HTML)
