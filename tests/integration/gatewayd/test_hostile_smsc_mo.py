"""The daemon's MO path against an SMSC that sends what no well-behaved SMSC would, on SQLite and PostgreSQL.

A hostile MO must cost the MOs around it nothing: they are stored and answered within their normal
latency (well under ``commit_retry_window``, the time a database outage is ridden out), whatever
shares their group commit. The hostile one is stored cleaned or refused with a permanent status,
never answered with a temporary error that brings it back forever. No log line names a subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.logging import EventFormatter
from gatewayd.store.messages import MOMessage
from simulator.core import Simulator
from smpp.constants import CommandID, CommandStatus
from tests.integration.gatewayd.hostile import HostileSMSC, daemon_on, migrated_with, raw_pdu
from tests.waiting import eventually

pytestmark = pytest.mark.integration

#: Far below the 4 s a database outage is ridden out before its MOs are answered ESME_RX_T_APPN.
NORMAL_LATENCY = 3.0
GOOD = 20
#: name -> (payload, data_coding): what a broken handset, SMSC or protocol converter sends.
HOSTILE = {
    "ucs2_nul": ("hola\0mundo".encode("utf-16-be"), 0x08),
    "latin1_nul": (b"caf\xe9\x00", 0x03),
    "binary_nul": (b"\x00\x01\x02\xff", 0x04),
    "controls": (b"ring\x07bell\x1b[0m", 0x01),
    "odd_ucs2": (b"\x00h\x00o\x00", 0x08),
    "lone_high_surrogate": (b"\xd8\x3d\x00h", 0x08),
    "lone_low_surrogate": (b"\x00h\xdc\x00", 0x08),
    "unknown_coding_nul": (b"x\x00y", 0x05),
}


def good_source(index: int) -> str:
    return f"3460010{index:04d}"


def hostile_source(index: int) -> str:
    return f"3460020{index:04d}"


@pytest.fixture
async def smsc() -> AsyncIterator[HostileSMSC]:
    async with HostileSMSC() as running:
        yield running


async def stored_mos(sessions: async_sessionmaker[AsyncSession]) -> list[MOMessage]:
    async with sessions() as session:
        return list((await session.execute(select(MOMessage).order_by(MOMessage.id))).scalars())


def send_good(
    smsc: HostileSMSC, count: int = GOOD, *, start: int = 0, connection: int | None = None
) -> list[int]:
    return [
        smsc.deliver(good_source(index), f"good {index}".encode(), connection=connection)
        for index in range(start, start + count)
    ]


def assert_answered_in_time(smsc: HostileSMSC, sequences: list[int]) -> None:
    for sequence in sequences:
        answer = smsc.answer_to(sequence)
        assert answer is not None and answer.status == CommandStatus.ESME_ROK, (sequence, answer)
        assert smsc.latency(sequence) < NORMAL_LATENCY, (sequence, smsc.latency(sequence))


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record as the daemon writes it: event, fields and folded traceback."""
    formatter = EventFormatter()
    return [formatter.format(record) for record in caplog.records]


def assert_no_subscriber_logged(caplog: pytest.LogCaptureFixture) -> None:
    for line in log_lines(caplog):
        assert "346001" not in line and "346002" not in line, line


async def test_nul_control_characters_and_broken_ucs2_cost_their_batch_nothing(
    tmp_path: Path,
    database_url: str,
    simulator: Simulator,
    smsc: HostileSMSC,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        good = send_good(smsc, GOOD // 2)
        hostile = {
            name: smsc.deliver(hostile_source(index), payload, data_coding=coding)
            for index, (name, (payload, coding)) in enumerate(HOSTILE.items())
        }
        good += send_good(smsc, 5, start=GOOD)
        await smsc.wait_answered(*good, *hostile.values())
        assert_answered_in_time(smsc, good)
        assert_answered_in_time(smsc, list(hostile.values()))
        assert daemon.mo.temporary_failures == 0
        stored = await stored_mos(daemon.sessions)
    by_text = {mo.text: mo for mo in stored}
    assert {f"good {index}" for index in [*range(GOOD // 2), *range(GOOD, GOOD + 5)]} <= set(by_text)
    cleaned = [mo for mo in stored if not mo.text.startswith("good ")]
    assert len(cleaned) == len(HOSTILE)
    for mo in cleaned:
        assert "\x00" not in mo.text and "\x07" not in mo.text and "\x1b" not in mo.text
        assert not any(0xD800 <= ord(char) <= 0xDFFF for char in mo.text)
    # what the text could not say is kept as the octets the SMSC sent
    payloads = {payload for payload, _ in HOSTILE.values()}
    assert {mo.raw for mo in cleaned} == payloads
    assert by_text["hola\ufffdmundo"].raw == HOSTILE["ucs2_nul"][0]
    assert all(mo.raw is None for mo in stored if mo.text.startswith("good "))
    assert_no_subscriber_logged(caplog)


REFUSE_POISON = {
    "postgresql": [
        """CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.text = 'poison' THEN
               RAISE EXCEPTION 'poisoned row' USING ERRCODE = '22023';
             END IF;
             RETURN NEW;
           END $$""",
        """CREATE TRIGGER refuse_poison BEFORE INSERT ON mo_messages
           FOR EACH ROW EXECUTE FUNCTION refuse_poison()""",
    ],
    "sqlite": [
        """CREATE TRIGGER refuse_poison BEFORE INSERT ON mo_messages WHEN NEW.text = 'poison'
           BEGIN SELECT RAISE(ABORT, 'poisoned row'); END""",
    ],
}


async def test_a_row_the_database_refuses_is_answered_permanently_and_the_rest_commit(
    tmp_path: Path,
    database_url: str,
    simulator: Simulator,
    smsc: HostileSMSC,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await migrated_with(database_url, REFUSE_POISON)  # the database refuses one MO's row
    caplog.set_level(logging.INFO)
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None and daemon.mo is not None
        good = send_good(smsc, GOOD // 2)
        poison = smsc.deliver(hostile_source(1), b"poison")
        good += send_good(smsc, 9, start=GOOD)
        await smsc.wait_answered(*good, poison)
        assert_answered_in_time(smsc, good)
        refused = smsc.answer_to(poison)
        assert refused is not None and refused.status == CommandStatus.ESME_RX_P_APPN
        assert smsc.latency(poison) < NORMAL_LATENCY
        assert daemon.mo.temporary_failures == 0 and daemon.mo.rejected == 1
        stored = await stored_mos(daemon.sessions)
    assert sorted(mo.text for mo in stored) == sorted(
        f"good {index}" for index in [*range(GOOD // 2), *range(GOOD, GOOD + 9)]
    )
    assert any(" mo.rejected " in line for line in log_lines(caplog))
    assert_no_subscriber_logged(caplog)


async def test_a_refused_source_is_logged_without_the_number(
    tmp_path: Path,
    database_url: str,
    simulator: Simulator,
    smsc: HostileSMSC,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with daemon_on(tmp_path, database_url, simulator, smsc):
        bad = smsc.deliver("3460020x0001", b"hola")
        [answer] = await smsc.wait_answered(bad)
        assert answer.status == CommandStatus.ESME_RINVSRCADR
    refused = [line for line in log_lines(caplog) if " mo.refused " in line]
    assert refused and "carrier=movistar" in refused[0]
    assert_no_subscriber_logged(caplog)


async def test_truncated_and_oversized_pdus_cost_the_other_bind_nothing(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None
        first, second = smsc.bound()
        # a deliver_sm cut short inside its addresses: answered with an error, the bind carries on
        truncated = smsc.next_sequence()
        smsc.push(raw_pdu(CommandID.DELIVER_SM, truncated, b"\0\x01\x01346001"), first)
        good = send_good(smsc, connection=second)
        await smsc.wait_answered(truncated, *good)
        assert smsc.answers[truncated].status != CommandStatus.ESME_ROK
        assert_answered_in_time(smsc, good)
        # a length no PDU may have: framing is lost, that connection closes and binds again
        smsc.push(raw_pdu(CommandID.DELIVER_SM, smsc.next_sequence(), length=10_000_000), first)
        more = send_good(smsc, 10, start=GOOD, connection=second)
        await smsc.wait_answered(*more)
        assert_answered_in_time(smsc, more)
        await smsc.wait_for(lambda: len(smsc.bound()) == 2 and first not in smsc.bound())
        texts = {mo.text for mo in await stored_mos(daemon.sessions)}
    assert texts == {f"good {index}" for index in range(GOOD + 10)}


async def test_a_flood_of_binds_and_requests_the_smsc_may_not_send(
    tmp_path: Path, database_url: str, simulator: Simulator, smsc: HostileSMSC
) -> None:
    async with daemon_on(tmp_path, database_url, simulator, smsc) as daemon:
        assert daemon.sessions is not None
        flood = b"".join(
            raw_pdu(command_id, smsc.next_sequence(), b"echat\0secret\0\0\x34\x00\x00\0")
            for _ in range(300)
            for command_id in (CommandID.BIND_TRANSCEIVER, CommandID.BIND_RECEIVER, CommandID.OUTBIND)
        )
        smsc.push(flood)
        good = send_good(smsc)
        await smsc.wait_answered(*good)
        assert_answered_in_time(smsc, good)

        async def all_stored() -> bool:
            assert daemon.sessions is not None
            return len(await stored_mos(daemon.sessions)) == GOOD

        await eventually(all_stored)
        assert len(smsc.bound()) == 2
