"""The daemon's MT path against an SMSC that answers what no well-behaved SMSC would, on SQLite and
PostgreSQL: a command_status SMPP reserves, receipts with an error code past 32 bits, a stat of the
carrier's own spelling, a message id no submit_sm_resp could have given. Each costs its own MT at most:
the MTs around it are sent, recorded and finished as usual, and every receipt is answered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.daemon import Daemon
from gatewayd.mt_policy import LOCAL_RESERVED_STATUS
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MOMessage, MTMessage, MTPart
from simulator.core import Simulator
from smpp.codec import encode
from smpp.constants import CommandID, CommandStatus, ESMClass, MessageState
from smpp.pdu import DataSM
from smpp.tlv import Tag, TLVs
from tests.integration.gatewayd.faults import queue_many
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE
from tests.integration.gatewayd.hostile import HostileSMSC, daemon_on, migrated_with
from tests.waiting import eventually

pytestmark = pytest.mark.integration

RESERVED_STATUS = 0x80000004


@pytest.fixture
async def smsc() -> AsyncIterator[HostileSMSC]:
    async with HostileSMSC() as running:
        yield running


async def mt_rows(sessions: async_sessionmaker[AsyncSession], ids: list[int]) -> dict[int, MTMessage]:
    async with sessions() as session:
        rows = await session.execute(select(MTMessage).where(MTMessage.id.in_(ids)))
        return {mt.id: mt for mt in rows.scalars()}


async def parts_by_message_id(sessions: async_sessionmaker[AsyncSession]) -> dict[str | None, MTPart]:
    async with sessions() as session:
        return {part.smsc_message_id: part for part in (await session.execute(select(MTPart))).scalars()}


async def sent_and_accepted(daemon: Daemon, texts: list[str]) -> list[int]:
    """Queues one MT per text to movistar and waits until the SMSC accepted them all; their ids."""
    assert daemon.sessions is not None and daemon.mt is not None
    sessions = daemon.sessions
    ids = await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, texts)
    daemon.mt.wake()

    async def all_accepted() -> bool:
        rows = await mt_rows(sessions, ids)
        return all(mt.status is MTStatus.ACCEPTED for mt in rows.values())

    await eventually(all_accepted, within=15)
    return ids


def receipt(message_id: str, stat: str, err: str) -> bytes:
    return (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2612061200 done date:2612061201 stat:{stat}"
        f" err:{err} text:hola"
    ).encode()


async def test_a_reserved_submit_status_fails_its_mt_and_the_others_are_sent_and_recorded(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    smsc.submit_statuses.append(RESERVED_STATUS)
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        ids = await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, ["uno", "dos", "tres"])
        daemon.mt.wake()

        async def all_finished_sending() -> bool:
            statuses = [mt.status for mt in (await mt_rows(sessions, ids)).values()]
            return sorted(statuses) == sorted([MTStatus.FAILED, MTStatus.ACCEPTED, MTStatus.ACCEPTED])

        await eventually(all_finished_sending, within=15)
        failed = [mt for mt in (await mt_rows(sessions, ids)).values() if mt.status is MTStatus.FAILED]
        assert len(failed) == 1 and failed[0].last_error is not None
        assert "0x80000004" in failed[0].last_error  # what the SMSC said is kept in the text
        parts = await parts_by_message_id(sessions)
        assert parts[None].mt_id == failed[0].id and parts[None].error_code == LOCAL_RESERVED_STATUS
        assert [status for _, status in smsc.submits] == [RESERVED_STATUS, 0, 0]

        # and the MTs after it keep flowing: the recorder is not stuck on the refused one
        later = await queue_many(sessions, MOVISTAR, MOVISTAR_SHORT_CODE, ["cuatro"])
        daemon.mt.wake()

        async def later_accepted() -> bool:
            return (await mt_rows(sessions, later))[later[0]].status is MTStatus.ACCEPTED

        await eventually(later_accepted, within=15)


async def test_hostile_receipts_are_answered_and_the_ones_that_can_be_applied_are(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        ids = await sent_and_accepted(daemon, ["uno", "dos", "tres"])
        mt_of = {message_id: part.mt_id for message_id, part in (await parts_by_message_id(sessions)).items()}
        first, second, third = (message_id for message_id, _ in smsc.submits)
        assert first is not None and second is not None and third is not None
        receipt_class = ESMClass.DELIVERY_RECEIPT
        sequences = [
            # a carrier's own spelling, and an error code no 32-bit column holds
            smsc.deliver("34600000001", receipt(first, "UNDELIVERED", "ffffffff"), esm_class=receipt_class),
            # no submit_sm_resp could have given this id (65 octets at most, its NUL included)
            smsc.deliver("34600000002", receipt("9" * 80, "DELIVRD", "000"), esm_class=receipt_class),
            smsc.deliver("34600000002", receipt("12\x0034", "DELIVRD", "000"), esm_class=receipt_class),
            # the text says delivered, the message_state TLV (which wins) says undeliverable
            smsc.deliver(
                "34600000003",
                receipt(second, "DELIVRD", "000"),
                esm_class=receipt_class,
                tlvs=TLVs({Tag.MESSAGE_STATE: MessageState.UNDELIVERABLE}),
            ),
            smsc.deliver("34600000004", receipt(third, "DELIVRD", "000"), esm_class=receipt_class),
        ]
        answers = await smsc.wait_answered(*sequences)
        assert [answer.status for answer in answers] == [CommandStatus.ESME_ROK] * len(sequences)

        async def finished() -> bool:
            rows = await mt_rows(sessions, ids)
            return {mt_id: rows[mt_id].status for mt_id in ids} == {
                mt_of[first]: MTStatus.FAILED,
                mt_of[second]: MTStatus.FAILED,
                mt_of[third]: MTStatus.DELIVERED,
            }

        await eventually(finished, within=15)
        parts = await parts_by_message_id(sessions)
        assert parts[first].receipt_state == "UNDELIV" and parts[first].error_code is None
        assert parts[second].receipt_state == "UNDELIV" and parts[third].receipt_state == "DELIVRD"
        assert daemon.recorder is not None and daemon.recorder.unparsable == 2


#: The database refuses the receipt of the MT whose SMSC id is ``h2``, as it would a value it cannot store.
REFUSE_H2_RECEIPT = {
    "postgresql": [
        """CREATE FUNCTION refuse_h2_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.smsc_message_id = 'h2' AND NEW.receipt_state IS NOT NULL THEN
               RAISE EXCEPTION 'poisoned receipt' USING ERRCODE = '22023';
             END IF;
             RETURN NEW;
           END $$""",
        """CREATE TRIGGER refuse_h2_receipt BEFORE UPDATE ON mt_parts
           FOR EACH ROW EXECUTE FUNCTION refuse_h2_receipt()""",
    ],
    "sqlite": [
        """CREATE TRIGGER refuse_h2_receipt BEFORE UPDATE ON mt_parts
           WHEN NEW.smsc_message_id = 'h2' AND NEW.receipt_state IS NOT NULL
           BEGIN SELECT RAISE(ABORT, 'poisoned receipt'); END""",
    ],
}


async def test_a_receipt_the_database_refuses_is_answered_permanently_and_the_rest_are_applied(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    await migrated_with(database_url, REFUSE_H2_RECEIPT)
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None and daemon.recorder is not None
        sessions = daemon.sessions
        ids = await sent_and_accepted(daemon, [f"mt {index}" for index in range(4)])
        # the four receipts at once (a group commit or a few): the database refuses the one holding h2
        sequences = {
            message_id: smsc.deliver(
                "34600000001", receipt(message_id, "DELIVRD", "000"), esm_class=ESMClass.DELIVERY_RECEIPT
            )
            for message_id in ("h1", "h2", "h3", "h4")
        }
        answers = dict(zip(sequences, await smsc.wait_answered(*sequences.values()), strict=True))
        assert {message_id: answer.status for message_id, answer in answers.items()} == {
            "h1": CommandStatus.ESME_ROK,
            "h2": CommandStatus.ESME_RX_P_APPN,
            "h3": CommandStatus.ESME_ROK,
            "h4": CommandStatus.ESME_ROK,
        }
        mt_of = {message_id: part.mt_id for message_id, part in (await parts_by_message_id(sessions)).items()}
        rows = await mt_rows(sessions, ids)
        assert {message_id: rows[mt_of[message_id]].status for message_id in sequences} == {
            "h1": MTStatus.DELIVERED,
            "h2": MTStatus.ACCEPTED,
            "h3": MTStatus.DELIVERED,
            "h4": MTStatus.DELIVERED,
        }
        assert daemon.recorder.refused_receipts == 1 and daemon.recorder.temporary_failures == 0


async def test_reports_by_data_sm_and_intermediate_notifications_reach_their_mts_and_acks_are_no_mos(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        ids = await sent_and_accepted(daemon, ["uno", "dos"])
        mt_of = {message_id: part.mt_id for message_id, part in (await parts_by_message_id(sessions)).items()}
        # a receipt by data_sm (SMPP 3.4 §4.7.1), its text in message_payload
        by_data_sm = smsc.next_sequence()
        smsc.push(
            encode(
                DataSM(
                    source_addr="34600000001",
                    destination_addr=MOVISTAR_SHORT_CODE,
                    esm_class=ESMClass.DELIVERY_RECEIPT,
                    tlvs=TLVs({Tag.MESSAGE_PAYLOAD: receipt("h1", "DELIVRD", "000")}),
                ),
                sequence_number=by_data_sm,
            )
        )
        notification = smsc.deliver(
            "34600000002", receipt("h2", "ENROUTE", "000"), esm_class=ESMClass.INTERMEDIATE_NOTIFICATION
        )
        acknowledgements = [
            smsc.deliver("34600000003", b"ack", esm_class=esm_class)
            for esm_class in (ESMClass.DELIVERY_ACK, ESMClass.USER_ACK, 0x18)
        ]
        answers = await smsc.wait_answered(by_data_sm, notification, *acknowledgements)
        assert [answer.status for answer in answers] == [CommandStatus.ESME_ROK] * 5
        assert answers[0].command_id == CommandID.DATA_SM_RESP

        async def first_delivered() -> bool:
            return (await mt_rows(sessions, ids))[mt_of["h1"]].status is MTStatus.DELIVERED

        await eventually(first_delivered, within=15)
        parts = await parts_by_message_id(sessions)
        assert parts["h2"].receipt_state == "ENROUTE"  # noted, not final
        assert (await mt_rows(sessions, ids))[mt_of["h2"]].status is MTStatus.ACCEPTED
        final = smsc.deliver(
            "34600000002", receipt("h2", "DELIVRD", "000"), esm_class=ESMClass.DELIVERY_RECEIPT
        )
        await smsc.wait_answered(final)

        async def second_delivered() -> bool:
            return (await mt_rows(sessions, ids))[mt_of["h2"]].status is MTStatus.DELIVERED

        await eventually(second_delivered, within=15)
        async with sessions() as session:
            assert (await session.execute(select(func.count()).select_from(MOMessage))).scalar() == 0


@pytest.mark.parametrize(
    ("form", "given", "in_receipt"),
    [
        # the id submit_sm_resp gave in decimal, the receipt in hex, and the other way round
        ("hex", lambda number: str(40_000_000_000 + number), lambda given: format(int(given), "X")),
        ("decimal", lambda number: format(0xABC0000 + number, "x"), lambda given: str(int(given, 16))),
    ],
)
async def test_receipts_that_write_the_id_in_the_other_base_reach_their_mt_by_the_carriers_quirk(
    tmp_path: Path,
    database_url: str,
    simulator: Simulator,
    smsc: HostileSMSC,
    form: str,
    given: Callable[[int], str],
    in_receipt: Callable[[str], str],
) -> None:
    smsc.message_id_of = given
    quirks = {MOVISTAR: f'receipt_message_id = "{form}"'}
    async with daemon_on(tmp_path, database_url, simulator, smsc, quirks=quirks) as daemon:
        assert daemon.sessions is not None and daemon.mt is not None
        sessions = daemon.sessions
        ids = await sent_and_accepted(daemon, ["uno", "dos"])
        sequences = [
            smsc.deliver(
                "34600000001",
                receipt(in_receipt(message_id), "DELIVRD", "000"),
                esm_class=ESMClass.DELIVERY_RECEIPT,
            )
            for message_id, _ in smsc.submits
            if message_id is not None
        ]
        await smsc.wait_answered(*sequences)

        async def all_delivered() -> bool:
            rows = await mt_rows(sessions, ids)
            return all(mt.status is MTStatus.DELIVERED for mt in rows.values())

        await eventually(all_delivered, within=15)
