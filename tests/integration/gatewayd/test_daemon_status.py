"""The daemon's status event (``<prefix>/status``): binds up and configured per carrier, published at
once on every bind change (the panel's start page shows it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gatewayd.bus.base import Subscription
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import MOVISTAR, make_config, running_daemon


async def next_status(heard: Subscription, binds_up: dict[str, int], binds: dict[str, int]) -> None:
    """Waits for a status event saying exactly that."""
    async with asyncio.timeout(15):
        async for event in heard:
            if event.payload["binds_up"] == binds_up and event.payload["binds"] == binds:
                return


async def test_a_bind_change_is_published_at_once(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, sqlite_url, simulator)
    async with running_daemon(config) as daemon:
        bus = daemon.bus
        assert bus is not None
        async with bus.subscribe(bus.topics.status()) as heard:
            carriers = tuple(carrier for carrier in config.carriers if carrier.name == MOVISTAR)
            daemon.reload(config.model_copy(update={"carriers": carriers}))
            await next_status(heard, {"movistar": 1}, {"movistar": 1})
            daemon.reload(config)  # and back: the vodafone bind up again is told too
            await next_status(heard, {"movistar": 1, "vodafone": 1}, {"movistar": 1, "vodafone": 1})


async def test_a_panel_asking_is_answered_at_once(
    tmp_path: Path, sqlite_url: str, simulator: Simulator
) -> None:
    config = make_config(tmp_path, sqlite_url, simulator)
    async with running_daemon(config) as daemon:
        bus = daemon.bus
        assert bus is not None
        async with bus.subscribe(bus.topics.status()) as heard:
            await bus.publish(bus.topics.status_request(), {})
            # well before the 15 s interval (next_status gives up after 15 s)
            async with asyncio.timeout(5):
                await next_status(heard, {"movistar": 1, "vodafone": 1}, {"movistar": 1, "vodafone": 1})
