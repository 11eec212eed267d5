"""The last active admin holds when two admins lock each other at the same moment (PostgreSQL,
READ COMMITTED): each transaction holds its target's row, then counts the active admins. Counted
without locks, both saw two admins and both locks went through, leaving none."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gatewayd.schema import upgrade
from gatewayd.store.accounts import Account, Role
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.auth.accounts import AccountRejected, lock_account
from panel.settings import PanelSettings
from tests.waiting import eventually

from .conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    login,
    memory_bus,
    page_csrf,
    prepare_store,
    serving,
)

ADMIN_SETTINGS = PanelSettings(database_url="", secure_cookies=False, argon2=FAST_ARGON2)


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade(pg_url)
    made = create_engine(pg_url)
    yield made
    await made.dispose()


async def test_two_admins_locking_each_other_at_once_leave_one_active(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        admins = [
            Account(username=name, display_name=name, password_hash="-", role=Role.ADMIN, permissions=[])
            for name in ("alba", "bruno")
        ]
        session.add_all(admins)
        await session.flush()
        first, second = (admin.id for admin in admins)
    both_hold_their_target = asyncio.Barrier(2)

    async def lock(target_id: int) -> None:
        async with sessions() as session, session.begin():
            target = await session.get(Account, target_id, with_for_update=True)
            assert target is not None
            await both_hold_their_target.wait()
            await lock_account(session, target, "each locks the other")

    outcomes = await asyncio.gather(lock(second), lock(first), return_exceptions=True)
    # One lock goes through; the other is refused (the last admin) or, the two waiting on each
    # other's rows, ended by PostgreSQL's deadlock detection and rolled back: never both.
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], AccountRejected) or "deadlock" in str(failures[0]).lower(), failures
    async with sessions() as session:
        active = await session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.role == Role.ADMIN, Account.locked.is_(False))
        )
    assert active == 1


async def test_a_request_that_postgresql_ends_in_a_deadlock_is_answered_503_try_again(
    pg_url: str, example_on_path: None
) -> None:
    """The same collision through the panel: the admin's lock request holds its target's row and
    waits for the other admin's row, which another transaction holds while it asks for the target's.
    PostgreSQL ends the request's transaction (it waited first); the admin gets "try again" with a
    Retry-After, not a 500, and nothing was written."""
    settings = dataclasses.replace(ADMIN_SETTINGS, database_url=pg_url)
    await prepare_store(pg_url)
    app = create_app(settings, bus_factory=memory_bus, plugins=list(BUILT_IN_PLUGINS))
    sessions = session_factory(create_engine(pg_url))
    async with sessions() as session, session.begin():
        ana = (await session.execute(select(Account).where(Account.username == "ana"))).scalar_one()
        alba = Account(
            username="alba", display_name="Alba", password_hash="-", role=Role.ADMIN, permissions=[]
        )
        session.add(alba)
        await session.flush()
        ana_id, alba_id = ana.id, alba.id
    assert ana_id < alba_id  # the request counts the admins in id order: ana's row first
    async with serving(app) as client:
        await login(client, "ana")
        token = await page_csrf(client, "/profile")
        async with sessions() as other, other.begin():
            await other.execute(select(Account.id).where(Account.id == ana_id).with_for_update())
            request = asyncio.create_task(
                client.post(
                    f"/admin/accounts/{alba_id}/lock",
                    data={"csrf_token": token, "reason": "collision"},
                    headers=HTML,
                )
            )
            await waiting_for_a_row_lock(other)
            with contextlib.suppress(
                DBAPIError
            ):  # the request ended, or this one: either way no deadlock stays
                await other.execute(select(Account.id).where(Account.id == alba_id).with_for_update())
            answer = await request
    assert answer.status_code == 503, answer.status_code
    assert answer.headers["retry-after"] == "1"
    assert "Se estaba haciendo otro cambio en el mismo momento" in answer.text  # ana reads Spanish
    async with sessions() as session:
        assert (await session.get(Account, alba_id)).locked is False  # type: ignore[union-attr]


async def waiting_for_a_row_lock(session: AsyncSession) -> None:
    """Until another backend of this database waits for a lock (the request, on ana's row)."""
    mine = await session.scalar(select(func.pg_backend_pid()))

    async def waiting() -> bool:
        return bool(
            await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> :mine"
                ),
                {"mine": mine},
            )
        )

    await eventually(waiting, what="the request waits on a row lock")
