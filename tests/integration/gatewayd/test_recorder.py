"""The MT recorder, the one owner of a part's outcome, on SQLite and PostgreSQL (no SMSC: the results
and receipts are handed to it as the MT pipeline and the binds hand them): a receipt meets its part's
submit result wherever it comes, and is answered only once committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from gatewayd import recorder as recorder_module
from gatewayd.binds import InboundDispatch
from gatewayd.bus.memory import MemoryBus
from gatewayd.events import EventPublisher
from gatewayd.mo_message import BindInfo
from gatewayd.recorder import MTRecorder
from gatewayd.store.enums import MTKind, MTStatus
from gatewayd.store.messages import MTMessage, MTStatusHistory
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT, PartResult
from gatewayd.store.store import Store
from smpp.constants import CommandStatus, ESMClass, MessageState
from smpp.pdu import DataSM, DeliverSM
from smpp.receipt import format_receipt
from tests.waiting import eventually

pytestmark = pytest.mark.integration

BIND = BindInfo(carrier="movistar", bind="movistar-1", country="ES", short_codes=("997745",))


@pytest.fixture
async def recorder(store: Store) -> AsyncIterator[MTRecorder]:
    async with MemoryBus() as bus:
        running = MTRecorder(store, EventPublisher(bus))
        task = asyncio.create_task(running.run_loop())
        try:
            yield running
        finally:
            running.close()
            await asyncio.wait_for(task, 10)


async def claimed_mt(store: Store) -> int:
    now = datetime.now(UTC)
    async with store.transaction() as session:
        outcome = await queue_mts(
            session, [NewMT(MTKind.PUSH, "movistar", "997745", "34600111222", "hola")], now
        )
        claimed = await store.claims.claim(session, "gw-test", now, limit=1, lease=60)
    assert [mt.id for mt in claimed.mts] == outcome
    return claimed.mts[0].id


def accepted(mt_id: int, message_id: str) -> PartResult:
    now = datetime.now(UTC)
    return PartResult(mt_id, 1, 1, "movistar", now, now, smsc_message_id=message_id, bind_name=BIND.bind)


def receipt(message_id: str) -> DeliverSM:
    now = datetime.now(UTC)
    text = format_receipt(message_id, MessageState.DELIVERED, now, now)
    return DeliverSM(esm_class=ESMClass.DELIVERY_RECEIPT, short_message=text.encode())


async def history(store: Store, mt_id: int) -> list[MTStatus]:
    async with store.sessions() as session:
        statement = select(MTStatusHistory.status).where(MTStatusHistory.mt_id == mt_id)
        return list((await session.execute(statement.order_by(MTStatusHistory.id))).scalars())


async def test_a_receipt_right_behind_its_submit_result_is_written_with_it(
    store: Store, recorder: MTRecorder
) -> None:
    mt_id = await claimed_mt(store)
    recorder.accepted("movistar", "a1")
    answer = recorder.receipt(BIND, receipt("A1"))  # message ids compare normalised
    assert isinstance(answer, asyncio.Future) and not answer.done()  # held until its part is written
    recorder.add([accepted(mt_id, "a1")])
    assert not answer.done()  # the results linger for receipts, then one transaction writes both
    assert await asyncio.wait_for(answer, 10) == CommandStatus.ESME_ROK
    assert recorder.with_part == 1 and recorder.unrecorded == 0
    assert await history(store, mt_id) == [
        MTStatus.QUEUED,
        MTStatus.SENDING,
        MTStatus.ACCEPTED,
        MTStatus.DELIVERED,
    ]


async def status(store: Store, mt_id: int) -> MTStatus | None:
    async with store.sessions() as session:
        return await session.scalar(select(MTMessage.status).where(MTMessage.id == mt_id))


async def test_results_do_not_linger_where_the_carriers_receipts_do_not_come_at_once(
    store: Store, recorder: MTRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "RECEIPT_LINGER", 600.0)  # lingering would outlast the test
    mt_id = await claimed_mt(store)
    recorder.accepted("movistar", "d1")
    recorder.add([accepted(mt_id, "d1")])  # no receipt of this carrier has come right behind its part
    await eventually(lambda: recorder.unrecorded == 0, within=10, what="the result written")
    assert await status(store, mt_id) is MTStatus.ACCEPTED


async def test_where_receipts_come_at_once_results_wait_for_them_and_go_once_they_have_them(
    store: Store, recorder: MTRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "RECEIPT_LINGER", 600.0)  # only the receipts end the wait
    monkeypatch.setattr(recorder_module, "RECEIPTS_AT_ONCE_MEMORY", 600.0)  # however slow the test
    first = await claimed_mt(store)
    recorder.accepted("movistar", "e1")
    first_answer = recorder.receipt(BIND, receipt("e1"))  # right behind its part: they come at once
    recorder.add([accepted(first, "e1")])  # holds its receipt: written at once
    assert await asyncio.wait_for(first_answer, 10) == CommandStatus.ESME_ROK
    second = await claimed_mt(store)
    recorder.accepted("movistar", "e2")
    recorder.add([accepted(second, "e2")])
    assert await status(store, second) is MTStatus.SENDING  # waiting for its receipt
    second_answer = recorder.receipt(BIND, receipt("e2"))
    assert await asyncio.wait_for(second_answer, 10) == CommandStatus.ESME_ROK
    assert recorder.with_part == 2 and recorder.unrecorded == 0  # each written with its part
    assert await status(store, second) is MTStatus.DELIVERED


async def test_a_receipt_that_overtakes_its_submit_result_is_applied_when_the_part_is_recorded(
    store: Store, recorder: MTRecorder
) -> None:
    mt_id = await claimed_mt(store)
    answer = recorder.receipt(BIND, receipt("b2"))  # no part accepted under that id yet: kept as early
    assert isinstance(answer, asyncio.Future)
    assert await asyncio.wait_for(answer, 10) == CommandStatus.ESME_ROK
    assert recorder.early == 1
    recorder.accepted("movistar", "b2")
    recorder.add([accepted(mt_id, "b2")])
    await asyncio.wait_for(recorder.flush(), 10)
    async with store.sessions() as session:
        assert (
            await session.scalar(select(MTMessage.status).where(MTMessage.id == mt_id)) is MTStatus.DELIVERED
        )


async def test_a_claimed_mt_given_back_is_queued_again_without_spending_its_attempt(
    store: Store, recorder: MTRecorder
) -> None:
    mt_id = await claimed_mt(store)
    recorder.give_back(mt_id, "not sent: the daemon is stopping")
    assert recorder.unrecorded == 1
    await asyncio.wait_for(recorder.flush(), 10)
    assert recorder.unrecorded == 0
    async with store.sessions() as session:
        row = (
            await session.execute(select(MTMessage.status, MTMessage.attempts).where(MTMessage.id == mt_id))
        ).one()
    assert (row.status, row.attempts) == (MTStatus.QUEUED, 0)


def test_the_binds_send_reports_to_the_recorder_answer_acknowledgements_and_the_rest_are_mos() -> None:
    seen: list[tuple[str, DeliverSM | DataSM]] = []

    def message(bind: BindInfo, pdu: DeliverSM | DataSM) -> int:
        seen.append(("mo", pdu))
        return CommandStatus.ESME_ROK

    def delivery_receipt(bind: BindInfo, pdu: DeliverSM | DataSM) -> int:
        seen.append(("receipt", pdu))
        return CommandStatus.ESME_ROK

    handler = InboundDispatch(messages=message, receipts=delivery_receipt).handler(BIND)
    mo = DeliverSM(short_message=b"hola")
    data = DataSM()
    dlr = receipt("c3")
    data_dlr = DataSM(esm_class=ESMClass.DELIVERY_RECEIPT)
    notification = DeliverSM(
        esm_class=ESMClass.INTERMEDIATE_NOTIFICATION, short_message=b"id:c4 stat:ENROUTE"
    )
    acknowledgement = DeliverSM(esm_class=ESMClass.USER_ACK, short_message=b"ok")
    for pdu in (mo, dlr, data, data_dlr, notification, acknowledgement):
        assert handler(pdu) == CommandStatus.ESME_ROK
    # the acknowledgement is answered, and nobody's MO
    assert seen == [
        ("mo", mo),
        ("receipt", dlr),
        ("mo", data),
        ("receipt", data_dlr),
        ("receipt", notification),
    ]
