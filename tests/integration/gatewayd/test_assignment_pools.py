"""Assignment honours operator pools, in the running daemon with no panel open: MOs from the
simulator are routed to two pools, two operators each answer one, and a conversation is never offered
to an operator of the other pool, not even when that operator is the only one online (it waits)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.config import load_config
from gatewayd.daemon import Daemon
from gatewayd.store.accounts import Presence, get_account_by_username
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_assignment import set_presence, touch_desk
from panel.auth.admin import user_add
from panel.auth.sessions import create_session
from panel.settings import Argon2Params, PanelSettings
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import (
    MOVISTAR,
    MOVISTAR_SHORT_CODE,
    VODAFONE,
    VODAFONE_SHORT_CODE,
    running_daemon,
    write_config,
)
from tests.waiting import eventually

FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "a good long password"

# movistar's MOs go to pool-a, vodafone's to pool-b; the daemon sweeps often (an operator who comes
# online is handed what waits at the next sweep)
POOLS = f"""
[[routes.mo]]
name = "movistar-to-a"
carrier = "{MOVISTAR}"
service = "chat-a"
operator_pool = "pool-a"

[[routes.mo]]
name = "vodafone-to-b"
carrier = "{VODAFONE}"
service = "chat-b"
operator_pool = "pool-b"

[assignment]
sweep_interval = 0.2
"""


async def at_desk(sessions: async_sessionmaker[AsyncSession], url: str, username: str) -> int:
    """The operator signs in, opens the desk and goes online (what the desk's controls store)."""
    async with sessions() as session, session.begin():
        account = await get_account_by_username(session, username)
        assert account is not None
        await create_session(session, account, PanelSettings(database_url=url), ip=None, user_agent=None)
        await set_presence(session, account.id, Presence.ONLINE)
        await touch_desk(session, account.id, utcnow())
        return account.id


async def conversations(daemon: Daemon) -> list[Conversation]:
    assert daemon.sessions is not None
    async with daemon.sessions() as session:
        statement = select(Conversation).order_by(Conversation.id)
        return list((await session.execute(statement)).scalars().all())


async def test_a_conversation_is_offered_only_to_operators_of_its_pool(
    tmp_path: Path, database_url: str, simulator: Simulator
) -> None:
    path = write_config(tmp_path / "gatewayd.toml", database_url, simulator)
    path.write_text(path.read_text(encoding="utf-8") + POOLS, encoding="utf-8")
    async with running_daemon(load_config(path, environ={})) as daemon:
        assert daemon.sessions is not None and daemon.assignment is not None
        for username, pool in (("alba", "pool-a"), ("bruno", "pool-b")):
            await user_add(database_url, username, "operator", PASSWORD, argon2=FAST_ARGON2, pools=[pool])
        bruno = await at_desk(daemon.sessions, database_url, "bruno")

        # only bruno (pool-b) is online: pool-a's conversation waits, pool-b's is his
        simulator.inject_mo(MOVISTAR, "+34600000001", MOVISTAR_SHORT_CODE, "hola, soy de A")
        simulator.inject_mo(VODAFONE, "+34700000001", VODAFONE_SHORT_CODE, "hola, soy de B")

        async def b_taken() -> bool:
            found = await conversations(daemon)
            return len(found) == 2 and any(c.assigned_operator_id == bruno for c in found)

        await eventually(b_taken)
        assert await daemon.assignment.assign() == []  # a pass more changes nothing: A waits
        first_a, first_b = sorted(await conversations(daemon), key=lambda c: c.operator_pool or "")
        assert (first_a.operator_pool, first_a.assigned_operator_id) == ("pool-a", None)
        assert first_a.status is ConversationStatus.WAITING
        assert (first_b.operator_pool, first_b.assigned_operator_id) == ("pool-b", bruno)

        # alba (pool-a) comes online: the daemon's sweep hands her what waited
        alba = await at_desk(daemon.sessions, database_url, "alba")

        async def a_taken() -> bool:
            found = {c.id: c for c in await conversations(daemon)}
            return found[first_a.id].assigned_operator_id == alba

        await eventually(a_taken)

        # with both online, every new conversation goes to its own pool's operator
        for number in range(2, 5):
            simulator.inject_mo(MOVISTAR, f"+3460000000{number}", MOVISTAR_SHORT_CODE, f"A {number}")
            simulator.inject_mo(VODAFONE, f"+3470000000{number}", VODAFONE_SHORT_CODE, f"B {number}")

        async def all_taken() -> bool:
            found = await conversations(daemon)
            return len(found) == 8 and all(c.assigned_operator_id is not None for c in found)

        await eventually(all_taken)
        holders = {(c.operator_pool, c.assigned_operator_id) for c in await conversations(daemon)}
    assert holders == {("pool-a", alba), ("pool-b", bruno)}
