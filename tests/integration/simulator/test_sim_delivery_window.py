"""deliver_sm to bound receivers: a full window holds receipts back until answers free it, and MOs go
round robin between receivers."""

from __future__ import annotations

import asyncio

import pytest

from simulator import Simulator
from smpp.aio import ESMESession
from smpp.constants import CommandStatus
from smpp.errors import NegativeResponseError
from smpp.pdu import DataSM, DeliverSM, QuerySM, QuerySMResp, SubmitSM, SubmitSMResp
from smpp.receipt import parse_receipt
from tests.integration.simulator.simharness import Inbox, esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration


async def test_receipts_wait_for_room_in_a_full_window_and_all_arrive() -> None:
    config = make_config()
    narrow = config.carriers[0].model_copy(update={"deliver_window": 2})
    config = config.model_copy(update={"carriers": (narrow, *config.carriers[1:])})
    async with Simulator(config) as simulator:
        carrier = simulator.carrier("movistar")
        in_flight: list[int] = []
        receipts: list[str] = []

        async def slow_receiver(pdu: DeliverSM | DataSM) -> int:
            assert isinstance(pdu, DeliverSM)
            in_flight.append(carrier.receivers[0].in_flight)
            await asyncio.sleep(0.002)  # answers trail the burst, so the window stays full
            receipts.append(parse_receipt(pdu.short_message).message_id)
            return 0

        async with ESMESession(esme_config(simulator, window=50), slow_receiver) as session:
            responses = await session.submit_many(
                SubmitSM(
                    source_addr="997745",
                    destination_addr="34600111222",
                    short_message=f"n {n}".encode(),
                    registered_delivery=1,
                )
                for n in range(40)
            )
            await eventually(lambda: len(receipts) == 40)
        assert max(in_flight) == 2  # the window filled and was never overrun
        assert not carrier.outbox
    submitted = [r.message_id for r in responses if isinstance(r, SubmitSMResp)]
    assert sorted(receipts) == sorted(submitted) and len(set(receipts)) == 40
    assert carrier.counters.receipts_sent == 40
    assert all(carrier.message_state(message_id) == 2 for message_id in submitted)  # DELIVERED


async def test_mos_go_round_robin_between_receivers() -> None:
    async with Simulator(make_config()) as simulator:
        first, second = Inbox(), Inbox()
        async with ESMESession(esme_config(simulator), first), ESMESession(esme_config(simulator), second):
            for n in range(10):
                simulator.inject_mo("movistar", "34600111222", "997745", f"Hola {n}")
            await first.wait_for(5)
            await second.wait_for(5)
    texts = [
        [pdu.short_message for pdu in inbox.pdus if isinstance(pdu, DeliverSM)] for inbox in (first, second)
    ]
    assert sorted(texts[0] + texts[1]) == sorted(f"Hola {n}".encode() for n in range(10))
    assert {len(texts[0]), len(texts[1])} == {5}
    assert simulator.carrier("movistar").counters.mo_delivered == 10


async def test_query_sm_answers_the_state_of_the_last_receipt_and_refuses_unknown_ids() -> None:
    async with Simulator(make_config()) as simulator:
        receipts = Inbox()
        async with ESMESession(esme_config(simulator), receipts) as session:
            mt = SubmitSM(
                source_addr="997745",
                destination_addr="34600111222",
                short_message=b"hola",
                registered_delivery=1,
            )
            answer = await session.submit(mt)
            assert isinstance(answer, SubmitSMResp)
            await receipts.wait_for(1)
            queried = await session.submit(QuerySM(message_id=answer.message_id, source_addr="997745"))
            assert isinstance(queried, QuerySMResp)
            assert (queried.message_id, queried.message_state) == (answer.message_id, 2)  # DELIVERED
            for unknown in ("ffffffff", answer.message_id.upper() + "0", " " + answer.message_id):
                with pytest.raises(NegativeResponseError) as refused:
                    await session.submit(QuerySM(message_id=unknown, source_addr="997745"))
                assert refused.value.response.command_status == CommandStatus.ESME_RQUERYFAIL
