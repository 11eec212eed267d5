"""With nothing scheduled the simulator's clock sleeps instead of ticking; work that needs it wakes it."""

from __future__ import annotations

import asyncio

import pytest

from simulator import Simulator
from smpp.aio import ESMESession
from smpp.pdu import SubmitSM
from tests.integration.simulator.simharness import Inbox, esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def idle_clock(simulator: Simulator) -> asyncio.Future[None]:
    await eventually(lambda: simulator._clock_wake is not None)
    wake = simulator._clock_wake
    assert wake is not None and not wake.done()
    return wake


async def test_a_receipt_wakes_the_idle_clock_and_arrives_at_once() -> None:
    async with Simulator(make_config()) as simulator:
        inbox = Inbox()
        async with ESMESession(esme_config(simulator), inbox) as session:
            wake = await idle_clock(simulator)
            await session.submit(
                SubmitSM(
                    source_addr="997745",
                    destination_addr="34600111222",
                    short_message=b"Hola",
                    registered_delivery=1,
                )
            )
            assert wake.done()  # scheduled into the empty wheel: the clock is up again
            await inbox.wait_for(1, seconds=0.5)  # a tick away, not the idle second
            await idle_clock(simulator)  # and asleep again once the wheel is empty


async def test_starting_a_load_wakes_the_idle_clock() -> None:
    async with Simulator(make_config()) as simulator:
        inbox = Inbox()
        async with ESMESession(esme_config(simulator), inbox):
            wake = await idle_clock(simulator)
            simulator.start_load(
                {"carrier": "movistar", "subscribers": 3, "rate": 200, "reply_probability": 0}
            )
            assert wake.done()
            await inbox.wait_for(3, seconds=1.0)
            simulator.stop_load()


async def test_counters_are_sampled_while_idle() -> None:
    async with Simulator(make_config()) as simulator:
        await idle_clock(simulator)
        counters = simulator.carrier("movistar").counters
        await eventually(lambda: len(counters._samples) >= 3, within=5)
