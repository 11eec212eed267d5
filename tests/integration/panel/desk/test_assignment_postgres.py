"""Two panel processes on one PostgreSQL database, both handling every MO event: each conversation is
handed out once and no operator goes over their limit."""

from __future__ import annotations

from collections import Counter

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Presence
from gatewayd.store.engine import create_engine, session_factory
from panel.settings import PanelSettings
from plugins.desk.service import assignment_service
from tests.waiting import eventually

from ..conftest import FAST_ARGON2, serving
from .conftest import at_desk, deliver_mo, desk_app, desk_settings, holders, prepare_desk_store


async def test_two_panels_never_give_a_conversation_twice(pg_url: str) -> None:
    await prepare_desk_store(pg_url)
    settings = PanelSettings(database_url=pg_url, secure_cookies=False, argon2=FAST_ARGON2)
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with (
            MemoryBus() as bus,
            serving(desk_app(settings, desk_settings(), bus)) as first,
            serving(desk_app(settings, desk_settings(), bus)) as second,
            at_desk(first, "olga", Presence.ONLINE),
            at_desk(second, "otto", Presence.ONLINE),
        ):
            olga = (await first.account("olga")).id
            otto = (await first.account("otto")).id
            async with bus.subscribe(f"{bus.topics.prefix}/conversation/+/assigned") as seen:
                for round_ in range(2):
                    for subscriber in range(12):
                        await deliver_mo(sessions, bus, f"3467000{subscriber:04d}", f"msg {round_}")

                async def ten_held() -> bool:
                    held = await holders(sessions)
                    return len(held) == 12 and sum(op is not None for op in held.values()) == 10

                await eventually(ten_held)
                # Both panels swept once more: nothing changes hands again.
                await assignment_service(first.runtime).assign()
                await assignment_service(second.runtime).assign()
                payloads = [(await seen.get()).payload for _ in range(10)]
                assert seen.dropped == 0
            held = await holders(sessions)
            assert Counter(held.values()) == {olga: 5, otto: 5, None: 2}
            assert sorted(p["conversation_id"] for p in payloads) == sorted(c for c, o in held.items() if o)
    finally:
        await engine.dispose()
