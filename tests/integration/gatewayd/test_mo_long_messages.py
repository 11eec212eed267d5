"""Long MOs: each part is stored and answered on its own commit; the whole message is assembled from the
stored parts, whichever bind and whichever daemon run they came through (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.config import Config
from gatewayd.daemon import Daemon
from gatewayd.store.messages import MOMessage, MOPart
from simulator.core import Simulator
from simulator.profiles import SimulatorConfig
from smpp.constants import CommandStatus
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    make_config,
    running_daemon,
    simulator_config,
)
from tests.integration.gatewayd.hostile import HostileSMSC
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBSCRIBER = "34600333444"
#: Far below the reassembly timeout the tests configure: a part is answered after its own commit.
NORMAL_LATENCY = 3.0
LONG_TEXT = (
    "Hola, quería preguntar por la promoción de este mes: ¿sigue en pie lo del descuento para los "
    "clientes que se dieron de alta el año pasado? Porque a mí no me ha llegado nada y mi vecina ya "
    "lo tiene. Gracias y un saludo desde Valencia, que aquí hace un calor que no se puede aguantar."
)
#: The three parts of LONG_TEXT in Latin-1 (data_coding 3), 130 octets each but the last.
PARTS = [LONG_TEXT[start : start + 130].encode("latin-1") for start in (0, 130, 260)]
LATIN1 = 0x03


def stop_and_wait_simulator() -> SimulatorConfig:
    """The simulator's movistar sends the next deliver_sm only once the previous one is answered."""
    base = simulator_config()
    movistar = base.carriers[0]
    assert movistar.name == MOVISTAR
    narrow = movistar.model_copy(update={"deliver_window": 1})
    return base.model_copy(update={"carriers": (narrow, base.carriers[1])})


async def whole_mos(sessions: async_sessionmaker[AsyncSession]) -> list[MOMessage]:
    async with sessions() as session:
        return list((await session.execute(select(MOMessage).order_by(MOMessage.id))).scalars())


async def parts_waiting(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(MOPart).where(MOPart.mo_id.is_(None))
        return int(await session.scalar(query) or 0)


async def test_a_stop_and_wait_smsc_gets_each_part_answered_and_the_desk_one_message(
    tmp_path: Path, database_url: str
) -> None:
    async with Simulator(stop_and_wait_simulator()) as simulator:
        config = make_config(tmp_path, database_url, simulator, reassembly_timeout=60.0)
        async with running_daemon(config) as daemon:
            assert daemon.sessions is not None
            sessions = daemon.sessions
            simulator.inject_mo(MOVISTAR, "+" + SUBSCRIBER, MOVISTAR_SHORT_CODE, LONG_TEXT * 2)

            async def one_message() -> bool:
                return len(await whole_mos(sessions)) == 1

            await eventually(one_message)  # each part waited on its own commit, not on the others
            [mo] = await whole_mos(sessions)
            async with sessions() as session:
                numbers = set((await session.execute(select(MOPart.msisdn))).scalars())
            counters = simulator.carrier(MOVISTAR).counters
        assert numbers == {SUBSCRIBER}  # the parts hold the number as every table does: digits, no '+'
        assert mo.text == LONG_TEXT * 2
        assert mo.parts == counters.mo_delivered > 2 and not mo.incomplete
        assert mo.service == "chat-movistar" and mo.conversation_id is not None


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


async def answered_in_time(smsc: HostileSMSC, sequence: int) -> None:
    [answer] = await smsc.wait_answered(sequence)
    assert answer.status == CommandStatus.ESME_ROK
    assert smsc.latency(sequence) < NORMAL_LATENCY


async def test_parts_through_two_binds_and_a_restart_make_one_message(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    config = hostile_config(tmp_path, database_url, simulator, smsc, reassembly_timeout=60.0)
    async with bound(config, smsc):
        first, second = smsc.bound()
        await answered_in_time(
            smsc, smsc.deliver_part(SUBSCRIBER, PARTS[0], 7, 3, 1, connection=first, data_coding=LATIN1)
        )
        await answered_in_time(
            smsc, smsc.deliver_part(SUBSCRIBER, PARTS[1], 7, 3, 2, connection=second, data_coding=LATIN1)
        )
    async with bound(config, smsc) as daemon:
        assert daemon.sessions is not None
        await answered_in_time(smsc, smsc.deliver_part(SUBSCRIBER, PARTS[2], 7, 3, 3, data_coding=LATIN1))
        [mo] = await whole_mos(daemon.sessions)
        assert await parts_waiting(daemon.sessions) == 0
    assert mo.text == LONG_TEXT and mo.parts == 3 and not mo.incomplete


async def test_last_parts_racing_on_two_binds_make_exactly_one_message_each(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    config = hostile_config(tmp_path, database_url, simulator, smsc, reassembly_timeout=60.0)
    async with bound(config, smsc) as daemon:
        assert daemon.sessions is not None
        first, second = smsc.bound()
        subscribers = [f"346003{index:05d}" for index in range(30)]
        for reference, subscriber in enumerate(subscribers):
            await answered_in_time(
                smsc, smsc.deliver_part(subscriber, PARTS[0], reference, 3, 1, data_coding=LATIN1)
            )
        racing = []
        for reference, subscriber in enumerate(subscribers):
            racing.append(
                smsc.deliver_part(subscriber, PARTS[1], reference, 3, 2, connection=first, data_coding=LATIN1)
            )
            racing.append(
                smsc.deliver_part(
                    subscriber, PARTS[2], reference, 3, 3, connection=second, data_coding=LATIN1
                )
            )
        for sequence in racing:
            await answered_in_time(smsc, sequence)
        stored = await whole_mos(daemon.sessions)
        assert await parts_waiting(daemon.sessions) == 0
    assert len(stored) == len(subscribers)
    assert all(mo.text == LONG_TEXT and not mo.incomplete for mo in stored)


async def test_parts_that_never_complete_become_one_incomplete_message_across_a_restart(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    config = hostile_config(tmp_path, database_url, simulator, smsc, reassembly_timeout=3.0)
    async with bound(config, smsc):
        await answered_in_time(smsc, smsc.deliver_part(SUBSCRIBER, PARTS[0], 9, 3, 1, data_coding=LATIN1))
    async with bound(config, smsc) as daemon:
        assert daemon.sessions is not None
        sessions = daemon.sessions
        await answered_in_time(smsc, smsc.deliver_part(SUBSCRIBER, PARTS[1], 9, 3, 2, data_coding=LATIN1))

        async def flushed() -> bool:
            return len(await whole_mos(sessions)) > 0

        await eventually(flushed)
        await asyncio.sleep(0)
        [mo] = await whole_mos(sessions)
        assert await parts_waiting(sessions) == 0
    assert mo.incomplete and mo.parts == 3
    assert mo.text == LONG_TEXT[:260]


async def test_a_part_redelivered_after_its_answer_was_lost_is_not_a_new_fragment(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    config = hostile_config(tmp_path, database_url, simulator, smsc, reassembly_timeout=60.0)
    async with bound(config, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        await answered_in_time(smsc, smsc.deliver_part(SUBSCRIBER, PARTS[0], 11, 3, 1, data_coding=LATIN1))
        await answered_in_time(smsc, smsc.deliver_part(SUBSCRIBER, PARTS[1], 11, 3, 2, data_coding=LATIN1))
        # the answer to the last part is lost with its connection: the SMSC delivers that part again
        smsc.on_answer = lambda connection, sequence: smsc.drop(connection)
        last = smsc.deliver_part(SUBSCRIBER, PARTS[2], 11, 3, 3, data_coding=LATIN1)
        await smsc.wait_for(lambda: len(smsc.bound()) == 1)
        smsc.on_answer = None
        await smsc.wait_for(lambda: len(smsc.bound()) == 2)
        await answered_in_time(
            smsc, smsc.deliver_part(SUBSCRIBER, PARTS[2], 11, 3, 3, sequence=last, data_coding=LATIN1)
        )
        [mo] = await whole_mos(daemon.sessions)
        assert await parts_waiting(daemon.sessions) == 0
        assert daemon.mo.duplicates == 1
    assert mo.text == LONG_TEXT and not mo.incomplete
