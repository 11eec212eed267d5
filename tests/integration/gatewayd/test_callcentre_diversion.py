"""The call-centre diversion in the running daemon: an admin's switch (stored, then announced on the
bus as the panel does) sends the next MO of the service, and the conversation already waiting, to the
call-centre pool's operator; switched off, the service's own operators answer again; a conversation
already held stays where it is; ``[[services]] callcentre`` is the value until the first switch; the
switches survive a restart. The sweep runs once a minute here: what changes at once comes from the
bus event, not from a sweep."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from gatewayd.config import load_config
from gatewayd.daemon import Daemon
from gatewayd.diversion import announce_diversion
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.services import settings_version, switch_diversion
from gatewayd.store.subscribers import Subscriber
from panel.auth.admin import user_add
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    running_daemon,
    write_config,
)
from tests.integration.gatewayd.test_assignment_pools import FAST_ARGON2, PASSWORD, at_desk
from tests.waiting import eventually

SETTINGS = """
[assignment]
sweep_interval = 60
callcentre_pool = "cc-team"
"""


def config_file(tmp_path: Path, database_url: str, simulator: Simulator) -> Path:
    path = write_config(tmp_path / "gatewayd.toml", database_url, simulator)
    text = path.read_text(encoding="utf-8")
    text = text.replace('name = "chat-movistar"\n', 'name = "chat-movistar"\noperator_pool = "pool-a"\n')
    text = text.replace('name = "chat-vodafone"\n', 'name = "chat-vodafone"\ncallcentre = true\n')
    path.write_text(text + SETTINGS, encoding="utf-8")
    return path


async def switch(daemon: Daemon, service: str, diverted: bool) -> None:
    """What the panel's switch does: store it, commit, announce it on the bus."""
    assert daemon.sessions is not None
    async with daemon.sessions() as session, session.begin():
        await switch_diversion(session, service, diverted, utcnow(), by="ana", by_id=None)
        version = await settings_version(session)
    await announce_diversion(daemon.bus, service, diverted, version)


async def holder_of(daemon: Daemon, msisdn: str) -> tuple[bool, int | None]:
    """(whether the number's conversation exists, its operator)."""
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        row = (
            await session.execute(
                select(Conversation.assigned_operator_id)
                .join(Subscriber, Subscriber.id == Conversation.subscriber_id)
                .where(Subscriber.msisdn == msisdn)
            )
        ).one_or_none()
    return (row is not None, row[0] if row is not None else None)


async def opened(daemon: Daemon, msisdn: str) -> None:
    async def check() -> bool:
        return (await holder_of(daemon, msisdn))[0]

    await eventually(check)


async def held_by(daemon: Daemon, msisdn: str, operator_id: int) -> None:
    async def check() -> bool:
        return await holder_of(daemon, msisdn) == (True, operator_id)

    await eventually(check)


async def test_diversion_switches_waiting_and_new_conversations_at_once_and_survives_a_restart(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    path = config_file(tmp_path, database_url, simulator)
    async with running_daemon(load_config(path, environ={})) as daemon:
        assert daemon.sessions is not None and daemon.assignment is not None
        await user_add(database_url, "alba", "operator", PASSWORD, argon2=FAST_ARGON2, pools=["pool-a"])
        await user_add(database_url, "carla", "operator", PASSWORD, argon2=FAST_ARGON2, pools=["cc-team"])
        carla = await at_desk(daemon.sessions, database_url, "carla")

        # the configuration diverts chat-vodafone: its MO goes to the call centre from the start
        simulator.inject_mo(VODAFONE, "+34700000001", VODAFONE_SHORT_CODE, "hola")
        await held_by(daemon, "34700000001", carla)

        # chat-movistar is not diverted and only the call centre is online: its MO waits
        simulator.inject_mo(MOVISTAR, "+34600000001", MOVISTAR_SHORT_CODE, "hola, espero")
        await opened(daemon, "34600000001")
        assert await daemon.assignment.assign() == []
        assert await holder_of(daemon, "34600000001") == (True, None)

        # switched on: the waiting conversation goes to carla at once, and so does the next MO
        await switch(daemon, "chat-movistar", True)
        await held_by(daemon, "34600000001", carla)
        simulator.inject_mo(MOVISTAR, "+34600000002", MOVISTAR_SHORT_CODE, "hola, soy nuevo")
        await held_by(daemon, "34600000002", carla)

        # switched off: the service's own operator answers again; carla keeps what she holds
        await switch(daemon, "chat-movistar", False)
        alba = await at_desk(daemon.sessions, database_url, "alba")
        simulator.inject_mo(MOVISTAR, "+34600000003", MOVISTAR_SHORT_CODE, "hola otra vez")
        await held_by(daemon, "34600000003", alba)
        assert await holder_of(daemon, "34600000002") == (True, carla)

        # chat-vodafone switched off against its configuration, chat-movistar on: kept for the restart
        await switch(daemon, "chat-vodafone", False)
        await switch(daemon, "chat-movistar", True)

    async with running_daemon(load_config(path, environ={}), migrate=False) as daemon:
        assert daemon.sessions is not None
        await at_desk(daemon.sessions, database_url, "carla")
        await at_desk(daemon.sessions, database_url, "alba")
        simulator.inject_mo(MOVISTAR, "+34600000004", MOVISTAR_SHORT_CODE, "tras reiniciar")
        await held_by(daemon, "34600000004", carla)
        # chat-vodafone now answers its own pool ("default"), where nobody is online: it waits
        simulator.inject_mo(VODAFONE, "+34700000002", VODAFONE_SHORT_CODE, "tras reiniciar")
        await opened(daemon, "34700000002")
        assert daemon.assignment is not None and await daemon.assignment.assign() == []
        assert await holder_of(daemon, "34700000002") == (True, None)
