"""A busy database answers 503 ``busy`` with Retry-After, never 500: on PostgreSQL a list read that runs
past its time limit is given up, and a request that finds no pooled connection free in time is refused."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.apikeys import Scope, create_key
from gatewayd.store.base import utcnow
from panel.api import resources
from panel.api.app import BUSY_RETRY_AFTER
from panel.app import create_app
from panel.settings import PanelSettings
from plugins import auth

from ..conftest import FAST_ARGON2, PanelClient, serving
from ..seeding import create_store_with_accounts
from .conftest import MakeKey, outbox_settings, seed_subscribers
from .test_api_send import assert_problem, bearer

pytestmark = pytest.mark.integration

POSTGRESQL = pytest.mark.parametrize("api_database_url", ["postgresql"], indirect=True)
LISTS = ("/api/v1/mos", "/api/v1/conversations", "/api/v1/clients")


@POSTGRESQL
@pytest.mark.parametrize("path", LISTS)
async def test_a_list_read_past_its_time_limit_is_a_503_busy(
    api: PanelClient,
    make_key: MakeKey,
    path: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await seed_subscribers(api.runtime.settings.database_url)
    reader = await make_key(Scope.READ)
    monkeypatch.setattr(resources, "LIST_READ_SECONDS", 0.2)
    # Another transaction holds the tables the lists read: the list's statement waits for the lock
    # until the statement timeout cancels it.
    async with api.runtime.engine.connect() as other, other.begin():
        await other.execute(
            text("LOCK TABLE mo_messages, conversations, subscribers IN ACCESS EXCLUSIVE MODE")
        )
        with caplog.at_level(logging.WARNING, logger="panel.api.app"):
            slow = await api.get(path, headers=bearer(reader))
    body = assert_problem(slow, 503, "busy")
    assert slow.headers["retry-after"] == str(BUSY_RETRY_AFTER)
    assert "too long" in str(body["detail"])
    assert f"GET {path} answered 503" in caplog.text
    # The lock gone, the same read answers.
    assert (await api.get(path, headers=bearer(reader))).status_code == 200


@pytest.fixture
async def one_connection(pg_url: str) -> AsyncIterator[Starlette]:
    """The panel on an engine of one pooled connection that waits 0.1 s for it."""
    await create_store_with_accounts(pg_url, [auth.plugin], {}, password="x" * 20, argon2=FAST_ARGON2)
    engine = create_async_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    settings = PanelSettings(
        database_url=pg_url, secure_cookies=False, argon2=FAST_ARGON2, outbox=outbox_settings()
    )
    try:
        yield create_app(settings, engine=engine, bus=MemoryBus(), plugins=[auth.plugin])
    finally:
        await engine.dispose()


async def test_no_free_connection_is_a_503_busy_not_a_500(
    one_connection: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(one_connection, client_host="10.1.2.3") as api:
        async with api.runtime.sessionmaker() as session, session.begin():
            made = await create_key(
                session, name="crm", scopes=[Scope.READ], allow=[], rate=None, created_by="test", now=utcnow()
            )
        async with api.runtime.engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with caplog.at_level(logging.WARNING, logger="panel.api.app"):
                refused = await api.get("/api/v1/clients", headers=bearer(made.token))
        body = assert_problem(refused, 503, "busy")
        assert refused.headers["retry-after"] == str(BUSY_RETRY_AFTER)
        assert "too busy" in str(body["detail"])
        assert "GET /api/v1/clients answered 503" in caplog.text
        # The connection given back, the read answers.
        assert (await api.get("/api/v1/clients", headers=bearer(made.token))).status_code == 200
