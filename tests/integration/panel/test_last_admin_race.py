"""The last active admin holds when two admins lock each other at the same moment (PostgreSQL,
READ COMMITTED): each transaction holds its target's row, then counts the active admins. Counted
without locks, both saw two admins and both locks went through, leaving none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayd.schema import upgrade
from gatewayd.store.accounts import Account, Role
from gatewayd.store.engine import create_engine, session_factory
from panel.auth.accounts import AccountRejected, lock_account


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
