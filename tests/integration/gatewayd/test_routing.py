"""Routing in the running daemon: MO rules give the stored MO its service and its conversation the
operator pool and call-centre flag; a reply leaves by the bind
its MO came in on, and by another bind of the same carrier when that one is down."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from gatewayd.config import load_config
from gatewayd.daemon import Daemon
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MOMessage, MTMessage, MTPart
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    running_daemon,
    write_config,
)
from tests.integration.gatewayd.proxy import TCPProxy
from tests.waiting import eventually

SUBSCRIBER = "+34600111222"

ROUTES = f"""
[[services]]
name = "alias-chat"
short_code = "{MOVISTAR_SHORT_CODE}"
keyword = "ALIAS"

[[routes.mo]]
name = "vodafone-tarot"
carrier = "{VODAFONE}"
keyword = "TAROT"
service = "tarot"
operator_pool = "tarot-team"
callcentre = true
"""


async def stored_mos(daemon: Daemon) -> list[MOMessage]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        return list((await session.execute(select(MOMessage).order_by(MOMessage.id))).scalars().all())


async def conversations(daemon: Daemon) -> list[Conversation]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        return list((await session.execute(select(Conversation))).scalars().all())


async def test_mo_rules_pick_the_service_of_each_stored_mo(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    path = write_config(tmp_path / "gatewayd.toml", database_url, simulator)
    path.write_text(path.read_text(encoding="utf-8") + ROUTES, encoding="utf-8")
    async with running_daemon(load_config(path, environ={})) as daemon:
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "alias hola, ¿hay alguien?")
        simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, "hola alias")
        simulator.inject_mo(VODAFONE, "+34700111222", VODAFONE_SHORT_CODE, "Tarot: ¿qué me espera?")
        simulator.inject_mo(VODAFONE, "+34700111222", VODAFONE_SHORT_CODE, "hola")

        async def all_stored() -> bool:
            return len(await stored_mos(daemon)) == 4

        await eventually(all_stored)
        services = {mo.text: mo.service for mo in await stored_mos(daemon)}
        pools = {
            (conversation.short_code, conversation.operator_pool, conversation.callcentre)
            for conversation in await conversations(daemon)
        }
    assert services == {
        "alias hola, ¿hay alguien?": "alias-chat",
        "hola alias": "chat-movistar",
        "Tarot: ¿qué me espera?": "tarot",
        "hola": "chat-vodafone",
    }
    # each conversation keeps the pool and call-centre flag of the route of the MO that opened it
    assert pools == {(MOVISTAR_SHORT_CODE, "default", False), (VODAFONE_SHORT_CODE, "tarot-team", True)}


async def test_a_reply_fails_over_to_the_other_bind_of_the_carrier(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    movistar_port = simulator.port(MOVISTAR)
    async with TCPProxy("127.0.0.1", movistar_port) as proxy:
        path = write_config(tmp_path / "gatewayd.toml", sqlite_url, simulator, binds_per_carrier=2)
        # movistar-1 reaches the simulator through the proxy, movistar-2 directly
        text = path.read_text(encoding="utf-8").replace(f"port = {movistar_port}", f"port = {proxy.port}", 1)
        path.write_text(text, encoding="utf-8")
        async with running_daemon(load_config(path, environ={}), binds_up=4) as daemon:
            assert daemon.binds is not None and daemon.sessions is not None and daemon.mt is not None
            binds = daemon.binds
            # the simulator hands MOs to its receivers in turn: text until one comes in on movistar-1
            for attempt in range(1, 5):
                simulator.inject_mo(MOVISTAR, SUBSCRIBER, MOVISTAR_SHORT_CODE, f"hola {attempt}")

                async def stored(count: int = attempt) -> bool:
                    return len(await stored_mos(daemon)) == count

                await eventually(stored)
                mo = (await stored_mos(daemon))[-1]
                if mo.bind_name == "movistar-1":
                    break
            assert mo.bind_name == "movistar-1"

            proxy.cut()
            await eventually(lambda: binds.binds_up(MOVISTAR) == 1)
            assert binds.sending_up() >= {"movistar-2"} and "movistar-1" not in binds.sending_up()
            async with daemon.sessions() as session, session.begin():
                [mt_id] = await queue_mts(
                    session,
                    [
                        NewMT(
                            kind=MTKind.REPLY,
                            carrier=MOVISTAR,
                            source=MOVISTAR_SHORT_CODE,
                            destination=SUBSCRIBER.removeprefix("+"),
                            text="Hola, soy Ana",
                            bind_name=mo.bind_name,
                            in_reply_to_mo_id=mo.id,
                        )
                    ],
                    datetime.now(UTC),
                )
            daemon.mt.wake()

            async def delivered() -> bool:
                async with daemon.sessions() as session:
                    mt = (await session.execute(select(MTMessage).where(MTMessage.id == mt_id))).scalar_one()
                    return mt.status is MTStatus.DELIVERED

            await eventually(delivered)
            async with daemon.sessions() as session:
                parts = (await session.execute(select(MTPart).where(MTPart.mt_id == mt_id))).scalars().all()
    assert [part.bind_name for part in parts] == ["movistar-2"]
    assert simulator.store.query(carrier=MOVISTAR, destination=SUBSCRIBER.removeprefix("+"))
