"""Who the client is, behind the panel's server (issue 9, item 16): ``X-Forwarded-For`` counts only
from the proxies ``[panel] forwarded_allow_ips`` names, none by default, so a local process (or
anyone reaching the port) cannot pick the address the sign-in rate limit counts failures by."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import select

from gatewayd.config import HTTPServerConfig
from gatewayd.store.accounts import LoginAttempt
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.webserver import listening_socket
from panel.serve import panel_server
from panel.settings import PanelSettings
from plugins import auth, home

from .conftest import FAST_ARGON2, HTML, prepare_store

FAILURES_PER_ADDRESS = 3
_GUESSES = itertools.count()
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


@asynccontextmanager
async def served(settings: PanelSettings, http: HTTPServerConfig) -> AsyncIterator[str]:
    """``gatewayd panel``'s server (``panel_server``) on an ephemeral 127.0.0.1 port."""
    sock = listening_socket("127.0.0.1", 0)
    server = panel_server(settings, plugins=[auth.plugin, home.plugin], http=http)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="test.panel.server")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def bad_logins_from(settings: PanelSettings, http: HTTPServerConfig) -> tuple[list[int], list[str]]:
    """Wrong passwords, each claiming another address in X-Forwarded-For: the statuses, and the
    addresses the sign-in recorded."""
    await prepare_store(settings.database_url)
    async with served(settings, http) as url, httpx.AsyncClient(base_url=url) as client:
        statuses = []
        for attempt in range(FAILURES_PER_ADDRESS + 2):
            claimed = {"x-forwarded-for": f"203.0.113.{attempt + 1}"}
            statuses.append((await bad_login(client, claimed)).status_code)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            seen = list((await session.execute(select(LoginAttempt.ip).order_by(LoginAttempt.id))).scalars())
    finally:
        await engine.dispose()
    return statuses, [ip or "" for ip in seen]


async def bad_login(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    page = await client.get("/login", headers={**HTML, **headers})
    found = CSRF_META.search(page.text)
    assert found is not None
    # Another unknown name each time: only the limit per address applies, not the delay per name.
    form = {"username": f"guess{next(_GUESSES)}", "password": "wrong password!", "csrf_token": found.group(1)}
    return await client.post("/login", data=form, headers={**HTML, **headers})


def settings_for(url: str) -> PanelSettings:
    return PanelSettings(
        database_url=url, secure_cookies=False, argon2=FAST_ARGON2, ip_max_failures=FAILURES_PER_ADDRESS
    )


async def test_a_spoofed_forwarded_for_changes_nothing_by_default(
    sqlite_url: str, example_on_path: None
) -> None:
    statuses, seen = await bad_logins_from(settings_for(sqlite_url), HTTPServerConfig())
    assert set(seen) == {"127.0.0.1"}  # the peer, whatever the header claimed
    assert statuses[-1] == 429  # so the limit per address holds


async def test_the_configured_proxy_is_believed(sqlite_url: str, example_on_path: None) -> None:
    proxy = HTTPServerConfig(forwarded_allow_ips=("127.0.0.1/32",))
    statuses, seen = await bad_logins_from(settings_for(sqlite_url), proxy)
    assert seen == [f"203.0.113.{attempt + 1}" for attempt in range(FAILURES_PER_ADDRESS + 2)]
    assert 429 not in statuses  # each address failed once
