"""Sign-in under load: pages and refused sign-ins never wait for SQLite's write lock, argon2 never
runs on the event loop, and a full hashing queue is answered at once instead of piling up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Account, WebSession
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.auth.passwords import PasswordPolicy
from panel.settings import Argon2Params, PanelSettings
from plugins import auth, home
from tests.waiting import eventually

from .conftest import HTML, PanelClient, login, page_csrf, prepare_store, serving
from .desk.conftest import live_server

# A hash of about 0.4 s here: long enough that a stalled event loop cannot go unseen.
SLOW_ARGON2 = Argon2Params(time_cost=8, memory_cost=65536, parallelism=1)
# Generous: requests that waited for the write lock would wait for SQLite's busy timeout (10 s).
PROMPT = 5.0


async def test_pages_and_refused_sign_ins_never_wait_for_the_write_lock(
    client: PanelClient, settings: PanelSettings
) -> None:
    await login(client, "oscar")
    token = await page_csrf(client, "/profile")

    async def sign_in(username: str) -> int:
        form = {"username": username, "password": "whatever it is", "csrf_token": token}
        return (await client.post("/login", data=form, headers=HTML)).status_code

    for number in range(settings.ip_max_failures):  # this address is now rate limited
        assert await sign_in(f"ghost{number}") == 401
    engine = create_engine(settings.database_url)
    try:
        # Another writer (the daemon committing MOs, say) holds the write lock throughout.
        async with session_factory(engine)() as holder, holder.begin():
            await holder.execute(update(Account).where(Account.username == "nadie").values(display_name="N"))
            async with asyncio.timeout(PROMPT):
                for path in ("/profile", "/operator", "/desk", "/desk/push"):
                    page = await client.get(path, headers=HTML)
                    assert page.status_code == 200, path
                assert await sign_in("ana") == 429
    finally:
        await engine.dispose()


async def test_a_page_never_waits_to_mark_its_session_active(app: Starlette, settings: PanelSettings) -> None:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)

    async def last_seen() -> datetime:
        async with sessions() as session:
            return (await session.execute(select(WebSession.last_seen_at))).scalar_one()

    try:
        async with live_server(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as browser:
            assert (await login(browser, "oscar")).status_code == 303
            async with sessions() as session, session.begin():  # a minute has passed: the mark is due
                await session.execute(
                    update(WebSession).values(last_seen_at=utcnow() - timedelta(seconds=61))
                )
            earlier = await last_seen()
            async with sessions() as holder, holder.begin():  # another writer holds the write lock
                await holder.execute(
                    update(Account).where(Account.username == "nadie").values(display_name="N")
                )
                async with asyncio.timeout(PROMPT):
                    assert (await browser.get("/profile", headers=HTML)).status_code == 200

            async def marked() -> bool:
                return await last_seen() > earlier

            await eventually(marked)  # the lock is free: the mark, written after the response
    finally:
        await engine.dispose()


@pytest.fixture
async def slow_hashing(sqlite_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    """A panel whose argon2 cost is SLOW_ARGON2, with one hashing worker and no queue."""
    await prepare_store(sqlite_url)
    settings = PanelSettings(
        database_url=sqlite_url,
        secure_cookies=False,
        argon2=SLOW_ARGON2,
        password_hash_workers=1,
        password_hash_queue=0,
        ip_max_failures=100,
        refusal_pause_seconds=0,  # a busy answer never waits for the worker (its pause: test_login.py)
    )
    app: Starlette = create_app(settings, bus=MemoryBus(), plugins=[auth.plugin, home.plugin])
    async with serving(app) as client:
        yield client


async def test_argon2_never_runs_on_the_event_loop(slow_hashing: PanelClient) -> None:
    loop = asyncio.get_running_loop()
    policy = PasswordPolicy(SLOW_ARGON2)  # built first: it hashes its own decoy, which is not "one hash"
    started = loop.time()
    await asyncio.to_thread(policy.verify_or_decoy, None, "x")
    one_hash = loop.time() - started
    longest_gap = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest_gap
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            longest_gap = max(longest_gap, loop.time() - last)
            last = loop.time()

    ticker = asyncio.create_task(tick())
    # Unknown names: each costs one full hash (the decoy), at the slow cost.
    answers = [await login(slow_hashing, f"nobody{number}", "wrong password") for number in range(2)]
    done.set()
    await ticker
    assert [answer.status_code for answer in answers] == [401, 401]
    # On the loop, each hash would stall every other request (and the daemon) for its whole length.
    assert longest_gap < one_hash / 2, (longest_gap, one_hash)


async def test_a_full_hashing_queue_is_answered_503_at_once(slow_hashing: PanelClient) -> None:
    assert (await login(slow_hashing, "ana")).status_code == 303
    token = await page_csrf(slow_hashing, "/profile")
    occupying = asyncio.create_task(slow_hashing.runtime.hashing.hash("keeps the only worker busy"))
    await asyncio.sleep(0)  # the task takes the worker
    form = {"username": "nobody", "password": "wrong password", "csrf_token": token}
    busy = await slow_hashing.post("/login", data=form, headers=HTML)
    assert (busy.status_code, busy.headers["retry-after"]) == (503, "1")
    new_password = {
        "current_password": "correct horse battery",
        "new_password": "another good password",
        "confirm_password": "another good password",
        "csrf_token": token,
    }
    changing = await slow_hashing.post("/profile/password", data=new_password, headers=HTML)
    assert changing.status_code == 503
    assert not occupying.done()  # both answered while the worker was still busy, not after it
    await occupying
    assert (await slow_hashing.post("/login", data=form, headers=HTML)).status_code == 401
