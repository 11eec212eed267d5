"""API fixtures: the panel (auth plugin only: the API is core) on SQLite and on PostgreSQL, with one
carrier for the outbox, a subscriber who opted out and one who is banned, and a helper that makes keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from gatewayd.bus.memory import MemoryBus
from gatewayd.config import BindConfig, CarrierConfig
from gatewayd.mo_message import dedup_key
from gatewayd.outbox import OutboxSettings
from gatewayd.store.apikeys import Scope, create_key
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine
from gatewayd.store.repo_mo import NewMO
from gatewayd.store.repo_subscribers import set_bans, set_opted_out
from gatewayd.store.store import Store
from panel.app import create_app
from panel.settings import PanelSettings
from plugins import auth

from ..conftest import FAST_ARGON2, PanelClient, serving
from ..seeding import create_store_with_accounts

OPTED_OUT, BANNED, FREE = "34600000001", "34600000002", "34600000003"
ALL_SCOPES = (Scope.SEND, Scope.READ, Scope.ADMIN, Scope.MSISDN)

MakeKey = Callable[..., Awaitable[str]]


def outbox_settings() -> OutboxSettings:
    bind = BindConfig(name="m-1", host="127.0.0.1", port=2775, system_id="echat", password=SecretStr("pw"))
    movistar = CarrierConfig(name="movistar", country="ES", short_codes=("997745",), binds=(bind,))
    return OutboxSettings(carriers=(movistar,), timezone="Europe/Madrid")


@pytest.fixture(params=["sqlite", "postgresql"])
def api_database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


async def seed_subscribers(url: str) -> dict[str, str]:
    """Three clients who wrote: one opted out, one banned, one free; msisdn -> client ID."""
    engine = create_engine(url)
    try:
        store = Store.for_engine(engine)
        now = utcnow()
        async with store.transaction() as session:
            rows = [
                NewMO(
                    dedup_key=dedup_key("movistar", msisdn, "997745", 0, uuid.uuid4().bytes),
                    msisdn=msisdn,
                    carrier="movistar",
                    short_code="997745",
                    text="hola",
                    received_at=now,
                    country="ES",
                )
                for msisdn in (OPTED_OUT, BANNED, FREE)
            ]
            stored = await store.mos.ingest(session, rows, now)
            await set_opted_out(session, stored[0].subscriber.id, True, now)
            await set_bans(session, [stored[1].subscriber.client_id], reason="abuse", now=now)
        return {row.msisdn: item.subscriber.client_id for row, item in zip(rows, stored, strict=True)}
    finally:
        await engine.dispose()


@pytest.fixture
async def api_app(api_database_url: str) -> Starlette:
    await create_store_with_accounts(
        api_database_url, [auth.plugin], {}, password="x" * 20, argon2=FAST_ARGON2
    )
    settings = PanelSettings(
        database_url=api_database_url, secure_cookies=False, argon2=FAST_ARGON2, outbox=outbox_settings()
    )
    return create_app(settings, bus=MemoryBus(), plugins=[auth.plugin])


@pytest.fixture
async def api(api_app: Starlette) -> AsyncIterator[PanelClient]:
    async with serving(api_app, client_host="10.1.2.3") as client:
        yield client


@pytest.fixture
def make_key(api: PanelClient) -> MakeKey:
    async def make(
        *scopes: Scope, allow: tuple[str, ...] = (), rate: float | None = None, name: str = "crm"
    ) -> str:
        async with api.runtime.sessionmaker() as session, session.begin():
            made = await create_key(
                session,
                name=name,
                scopes=list(scopes or ALL_SCOPES),
                allow=list(allow),
                rate=rate,
                created_by="test",
                now=utcnow(),
            )
        return made.token

    return make
