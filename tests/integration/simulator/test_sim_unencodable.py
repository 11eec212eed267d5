"""A message the carrier could never hand back in a deliver_sm: a data_sm with an address longer than
deliver_sm (and a handset) can hold is refused up front, and a deliver_sm that cannot be encoded is
dropped and counted, never left at the head of the queue where it stopped every MO and receipt of the
carrier and closed the connection of whichever ESME answered next."""

from __future__ import annotations

import asyncio
import logging

import pytest

from simulator import Simulator
from smpp.aio import ESMESession
from smpp.constants import TON, CommandStatus, ESMClass
from smpp.errors import NegativeResponseError
from smpp.pdu import DataSM, DataSMResp, DeliverSM
from smpp.tlv import Tag, TLVs
from tests.integration.simulator.simharness import Inbox, esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBSCRIBER = "34600111222"
SHORT_CODE = "997745"
PAYLOAD = TLVs(((Tag.MESSAGE_PAYLOAD, b"Hola desde data_sm"),))


def data_sm(source: str, destination: str) -> DataSM:
    return DataSM(source_addr=source, destination_addr=destination, registered_delivery=1, tlvs=PAYLOAD)


async def test_a_data_sm_with_an_address_no_deliver_sm_can_hold_is_refused() -> None:
    async with Simulator(make_config()) as simulator:
        inbox = Inbox()
        async with ESMESession(esme_config(simulator), inbox) as session:
            with pytest.raises(NegativeResponseError) as source_refused:
                await session.submit(data_sm("1" * 30, SUBSCRIBER))
            assert source_refused.value.status == CommandStatus.ESME_RINVSRCADR
            with pytest.raises(NegativeResponseError) as destination_refused:
                await session.submit(data_sm(SHORT_CODE, "3" * 21))
            assert destination_refused.value.status == CommandStatus.ESME_RINVDSTADR
            # 20 characters still fit, and the carrier goes on delivering receipts and MOs
            accepted = await session.submit(data_sm("1" * 20, SUBSCRIBER))
            assert isinstance(accepted, DataSMResp) and accepted.message_id
            simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "sigo aquí")
            pdus = await inbox.wait_for(2)
        counters = simulator.carrier("movistar").counters
        assert counters.mt_rejected == 2 and counters.mt_accepted == 1
        assert {bool(pdu.esm_class & ESMClass.DELIVERY_RECEIPT) for pdu in pdus} == {True, False}
        assert len(simulator.store.query(carrier="movistar")) == 1


async def test_an_unencodable_deliver_sm_is_dropped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bad deliver_sm waits behind a full window (1), so the answer of another ESME is what pumps
    it: before, the exception escaped that ESME's data_received and closed its connection."""
    config = make_config()
    narrow = config.carriers[0].model_copy(update={"deliver_window": 1})
    config = config.model_copy(update={"carriers": (narrow, *config.carriers[1:])})
    release = asyncio.Event()
    texts: list[bytes] = []

    async def held_receiver(pdu: DeliverSM | DataSM) -> int:
        texts.append(pdu.short_message)
        await release.wait()
        return 0

    async with Simulator(config) as simulator:
        carrier = simulator.carrier("movistar")
        async with ESMESession(esme_config(simulator), held_receiver) as session:
            simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "primero")
            await eventually(lambda: texts == [b"primero"])
            unencodable = DeliverSM(
                source_addr_ton=TON.INTERNATIONAL,
                source_addr=SUBSCRIBER,
                destination_addr="9" * 30,
                short_message=b"no cabe",
            )
            with caplog.at_level(logging.WARNING, logger="simulator"):
                carrier.enqueue(unencodable)
                simulator.inject_mo("movistar", SUBSCRIBER, SHORT_CODE, "segundo")
                assert len(carrier.outbox) == 2  # behind the full window
                release.set()
                await eventually(lambda: carrier.counters.mo_delivered == 2)
            assert texts == [b"primero", b"segundo"]
            assert session.bound and not carrier.outbox
        assert carrier.counters.deliveries_unencodable == 1
        assert carrier.counters.to_dict(0.0)["deliveries_unencodable"] == 1
        dropped = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
        assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
