"""The simulator driven by our own ESMESession: binds, MT encodings, long MTs, receipts, MO, faults."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from simulator import Simulator
from smpp.aio import ESMESession
from smpp.concat import Reassembler, split_message, user_data
from smpp.constants import CommandStatus, DataCoding, RegisteredDelivery
from smpp.errors import NegativeResponseError, ResponseTimeout, SessionClosed
from smpp.pdu import DeliverSM, GenericNack, SubmitSM, SubmitSMResp
from smpp.receipt import is_delivery_report, parse_receipt
from smpp.text import ConcatMode, encode_text
from tests.integration.simulator.simharness import Inbox, esme_config, make_config
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SUBSCRIBER = "34600111222"


def submit(
    text: str, data_coding: int = DataCoding.DEFAULT, *, registered: int = 0, destination: str = SUBSCRIBER
) -> SubmitSM:
    return SubmitSM(
        source_addr="997745",
        destination_addr=destination,
        data_coding=data_coding,
        short_message=encode_text(text, data_coding),
        registered_delivery=registered,
    )


async def test_bind_with_good_credentials_is_accepted(simulator: Simulator) -> None:
    async with ESMESession(esme_config(simulator)) as session:
        assert session.bound
        await eventually(lambda: len(simulator.carrier("movistar").sessions) == 1)
    await eventually(lambda: not simulator.carrier("movistar").sessions)


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("echat", "wrong", CommandStatus.ESME_RINVPASWD),
        ("nobody", "secret1", CommandStatus.ESME_RINVSYSID),
        ("echat", "secret2", CommandStatus.ESME_RINVPASWD),  # vodafone's password on movistar
    ],
)
async def test_bind_with_bad_credentials_is_refused(
    simulator: Simulator, system_id: str, password: str, status: int
) -> None:
    with pytest.raises(NegativeResponseError) as refused:
        async with ESMESession(esme_config(simulator, system_id=system_id, password=password)):
            pass
    assert refused.value.status == status
    assert simulator.carrier("movistar").counters.binds_refused == 1


async def test_refuse_binds_fault_uses_the_chosen_status(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"refuse_binds": {"status": "ESME_RSYSERR"}})
    with pytest.raises(NegativeResponseError) as refused:
        async with ESMESession(esme_config(simulator)):
            pass
    assert refused.value.status == CommandStatus.ESME_RSYSERR
    simulator.clear_faults("movistar")
    async with ESMESession(esme_config(simulator)) as session:
        assert session.bound


@pytest.mark.parametrize(
    ("text", "data_coding", "encoding"),
    [
        ("Hola, ¿qué tal? 10€ ñ", DataCoding.DEFAULT, "GSM-7"),
        ("Привет 😊 你好", DataCoding.UCS2, "UCS-2"),
        ("Olá, ação à tarde ÿ", DataCoding.LATIN1, "Latin-1"),
    ],
)
async def test_mt_of_each_encoding_is_stored_decoded(
    simulator: Simulator, text: str, data_coding: int, encoding: str
) -> None:
    async with ESMESession(esme_config(simulator)) as session:
        response = await session.submit(submit(text, data_coding))
    assert isinstance(response, SubmitSMResp) and response.message_id
    [record] = simulator.store.query(carrier="movistar")
    stored = record.to_dict()
    assert stored["text"] == text
    assert stored["encoding"] == encoding
    assert stored["message_id"] == response.message_id
    assert stored["destinations"] == [SUBSCRIBER]


async def test_long_udh_mt_is_reassembled_in_the_mt_list(simulator: Simulator) -> None:
    text = "Mensaje largo con acentos GSM: é ñ ü à Ñ {€}. " * 10
    segments = split_message(text, DataCoding.DEFAULT, mode=ConcatMode.UDH8, reference=42)
    assert len(segments) > 2
    async with ESMESession(esme_config(simulator)) as session:
        for segment in reversed(segments):  # out of order on purpose
            await session.submit(
                SubmitSM(
                    source_addr="997745",
                    destination_addr=SUBSCRIBER,
                    esm_class=segment.esm_class_flags,
                    short_message=segment.short_message,
                )
            )
    parts = [record.to_dict() for record in simulator.store.query()]
    assert {part["concat"]["part_number"] for part in parts} == set(range(1, len(segments) + 1))
    assert all(part["udh"]["concat"]["reference"] == 42 for part in parts)
    from simulator.mtstore import assemble

    [message] = assemble(simulator.store.query())
    assert message["text"] == text
    assert message["complete"] and message["segments"] == len(segments)


async def test_receipt_status_mix_over_1000_messages() -> None:
    config = make_config(statuses={"DELIVRD": 70.0, "UNDELIV": 20.0, "EXPIRED": 10.0})
    async with Simulator(config) as simulator:
        inbox = Inbox()
        async with ESMESession(esme_config(simulator, window=100), inbox) as session:
            responses = await session.submit_many(
                submit(f"mensaje {n}", registered=RegisteredDelivery.FINAL) for n in range(1000)
            )
            assert all(isinstance(r, SubmitSMResp) and r.command_status == 0 for r in responses)
            await inbox.wait_for(1000, seconds=30)
    receipts = [
        parse_receipt(pdu.short_message, pdu.tlvs)
        for pdu in inbox.pdus
        if isinstance(pdu, DeliverSM) and is_delivery_report(pdu.esm_class)
    ]
    assert len(receipts) == 1000
    submitted = {r.message_id for r in responses if isinstance(r, SubmitSMResp)}
    assert {r.message_id for r in receipts} == submitted
    mix = Counter(r.stat for r in receipts)
    # Binomial over 1000 draws: a 5-point band is more than 3 standard deviations for each state.
    assert abs(mix["DELIVRD"] / 10 - 70) <= 5
    assert abs(mix["UNDELIV"] / 10 - 20) <= 5
    assert abs(mix["EXPIRED"] / 10 - 10) <= 5
    assert set(mix) == {"DELIVRD", "UNDELIV", "EXPIRED"}


async def test_number_override_always_fails_and_no_receipt_without_registered_delivery() -> None:
    config = make_config(overrides={"34699999999": "UNDELIV"})
    async with Simulator(config) as simulator:
        inbox = Inbox()
        async with ESMESession(esme_config(simulator), inbox) as session:
            for _ in range(5):
                await session.submit(submit("hola", registered=1, destination="34699999999"))
            await session.submit(submit("sin acuse", registered=0))
            await inbox.wait_for(5)
            await eventually(lambda: not simulator.wheel)
        assert [parse_receipt(p.short_message).stat for p in inbox.pdus] == ["UNDELIV"] * 5
        assert simulator.carrier("movistar").counters.receipts_sent == 5


async def test_receipt_for_every_part_of_a_long_message(simulator: Simulator) -> None:
    segments = split_message("x" * 400, DataCoding.DEFAULT, mode=ConcatMode.UDH8, reference=9)
    inbox = Inbox()
    async with ESMESession(esme_config(simulator), inbox) as session:
        ids = []
        for segment in segments:
            response = await session.submit(
                SubmitSM(
                    source_addr="997745",
                    destination_addr=SUBSCRIBER,
                    esm_class=segment.esm_class_flags,
                    short_message=segment.short_message,
                    registered_delivery=1,
                )
            )
            assert isinstance(response, SubmitSMResp)
            ids.append(response.message_id)
        await inbox.wait_for(len(segments))
    assert sorted(parse_receipt(p.short_message).message_id for p in inbox.pdus) == sorted(ids)


async def test_injected_mo_reaches_the_bound_client(simulator: Simulator) -> None:
    inbox = Inbox()
    async with ESMESession(esme_config(simulator, "vodafone"), inbox):
        simulator.inject_mo("vodafone", "+34 600 111 222", "795500", "Hola, ¿hay alguien?")
        [pdu] = await inbox.wait_for(1)
    assert isinstance(pdu, DeliverSM)
    assert (pdu.source_addr, pdu.destination_addr) == (SUBSCRIBER, "795500")
    assert user_data(pdu)[1] == encode_text("Hola, ¿hay alguien?", 0)
    assert simulator.carrier("vodafone").counters.mo_delivered == 1


async def test_out_of_order_multipart_mo_is_reassemblable(simulator: Simulator) -> None:
    text = "Parte de un mensaje muy largo 😊 " * 10  # UCS-2, several parts
    inbox = Inbox()
    async with ESMESession(esme_config(simulator), inbox):
        result = simulator.inject_mo("movistar", SUBSCRIBER, "997745", text, order="reverse")
        pdus = await inbox.wait_for(result["parts"])
    assert result["parts"] > 2
    infos = [user_data(p)[0] for p in pdus if isinstance(p, DeliverSM)]
    assert [info.part_number for info in infos if info] == list(range(result["parts"], 0, -1))
    reassembler: Reassembler[int] = Reassembler(timeout=60, max_pending=10)
    done = []
    for index, pdu in enumerate(pdus):
        assert isinstance(pdu, DeliverSM)
        info, body = user_data(pdu)
        assert info is not None
        done += reassembler.add(pdu.source_addr, info, body, pdu.data_coding, 0.0, index)
    [message] = done
    assert message.complete and message.text == text


async def test_mo_injected_while_unbound_is_queued_and_delivered_at_bind(simulator: Simulator) -> None:
    result = simulator.inject_mo("movistar", SUBSCRIBER, "997745", "¿Sigues ahí?")
    assert result["queued"] is True
    inbox = Inbox()
    async with ESMESession(esme_config(simulator), inbox):
        [pdu] = await inbox.wait_for(1)
    assert isinstance(pdu, DeliverSM) and pdu.source_addr == SUBSCRIBER


# --- faults -------------------------------------------------------------------------------------------


async def test_msgqful_fault_is_retried_by_the_session_and_counted(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"msgqful": {"count": 2}})
    async with ESMESession(esme_config(simulator, throttle_backoff=0.01)) as session:
        response = await session.submit(submit("hola"))
    assert response.command_status == 0
    counters = simulator.carrier("movistar").counters
    assert counters.mt_rejected == 2 and counters.mt_accepted == 1


async def test_slow_fault_answers_late(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"slow": {"seconds": 0.5}})
    async with ESMESession(esme_config(simulator, response_timeout=0.05)) as session:
        with pytest.raises(ResponseTimeout):
            await session.submit(submit("hola"))
        # The answer still comes, after the delay.
        await eventually(lambda: simulator.carrier("movistar").counters.pdus_out.get(0x80000004, 0) == 1)


async def test_no_response_fault_times_out(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"no_response": True})
    async with ESMESession(esme_config(simulator, response_timeout=0.2)) as session:
        with pytest.raises(ResponseTimeout):
            await session.submit(submit("hola"))
        simulator.clear_faults("movistar")
        assert (await session.submit(submit("otra vez"))).command_status == 0


async def test_generic_nack_fault(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"generic_nack": True})
    async with ESMESession(esme_config(simulator)) as session:
        with pytest.raises(NegativeResponseError) as nacked:
            await session.submit(submit("hola"))
    assert isinstance(nacked.value.response, GenericNack)


async def test_drop_now_closes_every_connection(simulator: Simulator) -> None:
    async with ESMESession(esme_config(simulator)) as one, ESMESession(esme_config(simulator)) as two:
        simulator.set_faults("movistar", {"drop": {"now": True}})
        async with asyncio.timeout(5):
            await one.wait_closed()
            await two.wait_closed()
        assert not one.bound and not two.bound


async def test_drop_after_n_pdus(simulator: Simulator) -> None:
    async with ESMESession(esme_config(simulator)) as session:
        simulator.set_faults("movistar", {"drop": {"after_pdus": 3}})
        assert (await session.submit(submit("uno"))).command_status == 0
        assert (await session.submit(submit("dos"))).command_status == 0
        with pytest.raises(SessionClosed):
            await session.submit(submit("tres"))
    assert simulator.carrier("movistar").faults.drop_after_pdus is None


async def test_unanswered_enquire_link_drops_the_client(simulator: Simulator) -> None:
    simulator.set_faults("movistar", {"ignore_enquire_link": True})
    config = esme_config(simulator, enquire_link_interval=0.1, enquire_link_timeout=0.2)
    async with ESMESession(config) as session:
        async with asyncio.timeout(5):
            await session.wait_closed()
    assert simulator.carrier("movistar").counters.pdus_in[0x00000015] >= 1
    assert simulator.carrier("movistar").counters.pdus_out[0x80000015] == 0
