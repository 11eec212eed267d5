"""Redelivered MOs are stored once; the same text sent twice is two MOs (SQLite and PostgreSQL).

An SMSC delivers an MO again only when it did not get our deliver_sm_resp: the connection broke
before or right after we answered, or we answered after it stopped waiting. Only such MOs are
matched against what comes later; a subscriber who writes "hola" twice gets both delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import gatewayd.mo
from gatewayd.config import Config
from gatewayd.daemon import Daemon
from gatewayd.store.engine import create_engine
from gatewayd.store.messages import MOMessage
from simulator.core import Simulator
from smpp.constants import CommandStatus
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, make_config, running_daemon
from tests.integration.gatewayd.hostile import HostileSMSC
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBSCRIBER = "34600555666"


async def texts(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(MOMessage.text).order_by(MOMessage.id))).scalars())


async def test_hola_twice_is_two_mos(tmp_path: Path, database_url: str, simulator: Simulator) -> None:
    config = make_config(tmp_path, database_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")

        async def stored(count: int) -> bool:
            return len(await texts(sessions)) == count

        await eventually(lambda: stored(1))
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: stored(2))
        # and twice more at once, as an SMSC flushing its queue after an outage sends them
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: stored(4))
        assert await texts(sessions) == ["hola"] * 4
        assert daemon.mo.duplicates == 0
    assert simulator.carrier(MOVISTAR).counters.mo_delivered == 4


async def test_hola_again_after_a_clean_restart_is_a_new_mo(
    tmp_path: Path, database_url: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop unbinds: the SMSC answering our unbind has read every answer written before it, so
    the answers of the last moments before the stop are not in doubt, and the subscriber who writes
    the same words again after the restart has written a new MO."""
    # answers stay unconfirmed for a minute unless the unbind confirms them: no race with the stop
    monkeypatch.setattr(gatewayd.mo, "ANSWER_GRACE", 60.0)
    config = make_config(tmp_path, database_url, simulator)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: simulator.carrier(MOVISTAR).counters.mo_delivered == 1)
    async with running_daemon(config) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        sessions = daemon.sessions
        simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola")
        await eventually(lambda: simulator.carrier(MOVISTAR).counters.mo_delivered == 2)

        async def both_stored() -> bool:
            return await texts(sessions) == ["hola", "hola"]

        await eventually(both_stored)
        assert daemon.mo.duplicates == 0


@pytest.fixture
async def smsc() -> AsyncIterator[HostileSMSC]:
    async with HostileSMSC() as running:
        yield running


def hostile_config(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC, **options: object
) -> Config:
    return make_config(
        tmp_path, database_url, simulator, binds_per_carrier=2, ports={MOVISTAR: smsc.port}, **options
    )


@contextlib.asynccontextmanager
async def bound(config: Config, smsc: HostileSMSC) -> AsyncIterator[Daemon]:
    async with running_daemon(config, binds_up=4) as daemon:
        await smsc.wait_for(lambda: len(smsc.bound()) == 2)
        yield daemon


async def test_an_mo_whose_answer_was_lost_is_stored_once(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with bound(hostile_config(tmp_path, database_url, simulator, smsc), smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        # our answer is written, but the connection breaks before the SMSC reads it
        smsc.on_answer = lambda connection, sequence: smsc.drop(connection)
        sequence = smsc.deliver(SUBSCRIBER, b"hola")
        await smsc.wait_for(lambda: len(smsc.bound()) == 1)
        smsc.on_answer = None
        smsc.deliver(SUBSCRIBER, b"hola", sequence=sequence)  # delivered again, on the other bind
        [answer] = await smsc.wait_answered(sequence)
        assert answer.status == CommandStatus.ESME_ROK
        assert await texts(daemon.sessions) == ["hola"]
        assert daemon.mo.duplicates == 1
        # the subscriber writes it again: a new MO
        again = smsc.deliver(SUBSCRIBER, b"hola")
        await smsc.wait_answered(again)
        assert await texts(daemon.sessions) == ["hola", "hola"]


async def test_an_mo_whose_connection_closed_before_the_answer_is_stored_once(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with bound(hostile_config(tmp_path, database_url, simulator, smsc), smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        first, second = smsc.bound()
        sequence = smsc.deliver(SUBSCRIBER, b"hola", connection=first)
        smsc.hang_up(first)  # the SMSC gives up on that bind and delivers the MO on the other one at once
        smsc.deliver(SUBSCRIBER, b"hola", connection=second, sequence=sequence)
        [answer] = await smsc.wait_answered(sequence)
        assert answer.status == CommandStatus.ESME_ROK
        sessions = daemon.sessions

        async def stored() -> bool:
            return bool(await texts(sessions))

        await eventually(stored)
        assert await texts(sessions) == ["hola"]


@contextlib.asynccontextmanager
async def mo_table_locked(database_url: str) -> AsyncIterator[None]:
    """Another process holds the MO table (SQLite: the whole database) until the block ends."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # in a thread: while it waits for the lock, the daemon in this event loop finishes what it holds
        blocker = sqlite3.connect(
            url.database or "", isolation_level=None, timeout=30, check_same_thread=False
        )
        try:
            await asyncio.to_thread(blocker.execute, "BEGIN EXCLUSIVE")
            yield
            await asyncio.to_thread(blocker.execute, "COMMIT")
        finally:
            blocker.close()
        return
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("LOCK TABLE mo_messages IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await engine.dispose()


async def test_an_mo_answered_after_the_deadline_is_stored_once_when_delivered_again(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    config = hostile_config(tmp_path, database_url, simulator, smsc, extra_daemon="mo_answer_deadline = 0.5")
    async with bound(config, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        sessions = daemon.sessions
        async with mo_table_locked(database_url):
            late = smsc.deliver(SUBSCRIBER, b"hola")
            await eventually(lambda: daemon.mo is not None and daemon.mo.received == 1)
            await asyncio.sleep(1.0)  # the database stays locked past the answer deadline
        [answer] = await smsc.wait_answered(late)
        assert answer.status == CommandStatus.ESME_ROK and smsc.latency(late) > 0.5
        # the SMSC had stopped waiting before our answer came: it delivers the MO again
        smsc.deliver(SUBSCRIBER, b"hola", sequence=late)
        await smsc.wait_answered(late)
        assert await texts(sessions) == ["hola"]
        assert daemon.mo.duplicates == 1
