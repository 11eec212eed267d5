"""MO redelivery as a real SMSC does it: a temporary error is retried later with growing waits until it
is accepted or its window runs out; a permanent error drops the MO, counted."""

from __future__ import annotations

import time

from simulator import Simulator
from simulator.redelivery import RedeliveryPolicy
from smpp.aio import ESMESession
from smpp.constants import CommandStatus
from smpp.pdu import DataSM, DeliverSM
from tests.integration.simulator.simharness import esme_config, make_config
from tests.waiting import eventually

SUBSCRIBER = "+34600111222"
SHORT_CODE = "997745"


class ScriptedInbox:
    """Answers each delivery with the next status of ``script`` (then ``after``), noting when."""

    def __init__(self, script: list[int], after: int = CommandStatus.ESME_ROK) -> None:
        self.script = list(script)
        self.after = after
        self.arrivals: list[tuple[float, bytes]] = []

    async def __call__(self, pdu: DeliverSM | DataSM) -> int:
        self.arrivals.append((time.monotonic(), pdu.short_message))
        return self.script.pop(0) if self.script else self.after


def simulator_with(policy: RedeliveryPolicy) -> Simulator:
    config = make_config()
    carriers = tuple(carrier.model_copy(update={"redelivery": policy}) for carrier in config.carriers)
    return Simulator(config.model_copy(update={"carriers": carriers}))


async def test_temporary_errors_are_redelivered_with_backoff_until_accepted() -> None:
    policy = RedeliveryPolicy(initial=0.05, maximum=0.4, window=30.0, max_attempts=10)
    inbox = ScriptedInbox(
        [
            CommandStatus.ESME_RX_T_APPN,
            CommandStatus.ESME_RSYSERR,
            CommandStatus.ESME_RMSGQFUL,
            CommandStatus.ESME_RTHROTTLED,
        ]
    )
    async with simulator_with(policy) as simulator, ESMESession(esme_config(simulator), inbox):
        simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "hola")
        counters = simulator.carrier("movistar").counters
        await eventually(lambda: counters.mo_delivered == 1)
        assert len(inbox.arrivals) == 5 and {text for _, text in inbox.arrivals} == {b"hola"}
        assert counters.redeliveries == 4
        assert counters.mo_failed == 0 and counters.deliveries_expired == 0
        # each wait is at least the policy's (0.05, 0.1, 0.2, 0.4 s): not 5 attempts in a burst
        times = [at for at, _ in inbox.arrivals]
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert all(gap >= policy.delay(attempt) - 0.02 for attempt, gap in enumerate(gaps, start=1))


async def test_a_deliver_sm_refused_for_the_bind_state_is_delivered_again() -> None:
    """An ESME that has sent its unbind answers a deliver_sm crossing it with ESME_RINVBNDSTS: the
    session refused it, not the message, so it is tried again (found by the chaos test: dropping it
    lost an MO at every daemon's SIGTERM that met one)."""
    policy = RedeliveryPolicy(initial=0.05, maximum=0.1, window=30.0, max_attempts=10)
    inbox = ScriptedInbox([CommandStatus.ESME_RINVBNDSTS])
    async with simulator_with(policy) as simulator, ESMESession(esme_config(simulator), inbox):
        simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "hola")
        counters = simulator.carrier("movistar").counters
        await eventually(lambda: counters.mo_delivered == 1)
        assert [text for _, text in inbox.arrivals] == [b"hola", b"hola"]
        assert counters.redeliveries == 1 and counters.mo_failed == 0


async def test_a_permanent_error_drops_the_mo_and_counts_it() -> None:
    policy = RedeliveryPolicy(initial=0.05, maximum=0.1, window=30.0, max_attempts=10)
    inbox = ScriptedInbox([CommandStatus.ESME_RINVDSTADR])
    async with simulator_with(policy) as simulator, ESMESession(esme_config(simulator), inbox):
        simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "no existe")
        simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "hola")
        counters = simulator.carrier("movistar").counters
        await eventually(lambda: counters.mo_delivered == 1 and counters.mo_failed == 1)
        await eventually(lambda: not simulator.wheel)
        assert [text for _, text in inbox.arrivals] == [b"no existe", b"hola"]
        assert counters.redeliveries == 0


async def test_an_mo_never_accepted_is_given_up_after_its_attempts() -> None:
    policy = RedeliveryPolicy(initial=0.02, maximum=0.05, window=30.0, max_attempts=4)
    inbox = ScriptedInbox([], after=CommandStatus.ESME_RX_T_APPN)
    async with simulator_with(policy) as simulator, ESMESession(esme_config(simulator), inbox):
        simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "hola")
        counters = simulator.carrier("movistar").counters
        await eventually(lambda: counters.deliveries_expired == 1)
        await eventually(lambda: not simulator.wheel)
        assert len(inbox.arrivals) == 4
        assert counters.redeliveries == 3 and counters.mo_delivered == 0 and counters.mo_failed == 0
