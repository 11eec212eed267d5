"""Edges of the asyncio sessions: bind timeout, lost connections, cancelled submits, SMSC keepalive,
handler failures on the SMSC side, SMSC unbind draining its deliveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from smpp.aio import BindRequest, ESMEConfig, ESMESession, SMSCServer, SMSCSession
from smpp.codec import decode, encode
from smpp.constants import CommandID, CommandStatus
from smpp.errors import ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import (
    AlertNotification,
    BindTransceiver,
    DataSM,
    DeliverSM,
    DeliverSMResp,
    EnquireLink,
    SubmitSM,
    SubmitSMResp,
)
from tests.integration.smpp.smpp_peers import PASSWORD, RawSMSC, RecordingHandler
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def config_for(port: int, **overrides: object) -> ESMEConfig:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "edge",
        "password": PASSWORD,
    }
    settings.update(overrides)
    return ESMEConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts and never says a word."""
    writers: list[asyncio.StreamWriter] = []

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_bind_timeout_raises_and_closes(silent_port: int) -> None:
    session = ESMESession(config_for(silent_port, bind_timeout=0.2))
    with pytest.raises(ResponseTimeout):
        await session.__aenter__()
    async with asyncio.timeout(10):
        await session.wait_closed()
    assert not session.bound


async def test_config_and_reentry_are_checked(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    with pytest.raises(ValueError):
        ESMESession(config_for(server.port, window=0))
    with pytest.raises(ValueError):
        SMSCServer(handler, deliver_window=0)
    async with ESMESession(config_for(server.port)) as esme:
        with pytest.raises(SMPPError):
            await esme.__aenter__()
        assert esme.queued == 0 and esme.state.value == "bound_trx"


async def test_connection_lost_fails_in_flight_queued_and_held(raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: None  # answer nothing
    esme = await ESMESession(config_for(raw_smsc.port, window=2)).__aenter__()
    outcomes: list[object] = []
    for index in range(5):
        esme.submit_nowait(SubmitSM(short_message=b"%d" % index), outcomes.append)
    await raw_smsc.wait_for(lambda: len(raw_smsc.of(CommandID.SUBMIT_SM)) == 2)
    assert esme.in_flight == 2 and esme.queued == 3
    raw_smsc.drop()
    async with asyncio.timeout(10):
        await esme.wait_closed()
    assert len(outcomes) == 5 and all(isinstance(outcome, SessionClosed) for outcome in outcomes)
    assert esme.in_flight == 0 and esme.queued == 0
    with pytest.raises(SessionClosed):
        await esme.submit(SubmitSM())
    await esme.unbind()  # nothing to do on a closed session


async def test_cancelled_submit_is_never_sent(raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: None
    async with ESMESession(config_for(raw_smsc.port, window=1, response_timeout=0.2)) as esme:
        first = asyncio.create_task(esme.submit(SubmitSM(short_message=b"first")))
        second = asyncio.create_task(esme.submit(SubmitSM(short_message=b"second")))
        await raw_smsc.wait_for(lambda: len(raw_smsc.of(CommandID.SUBMIT_SM)) == 1)
        second.cancel()
        with pytest.raises(ResponseTimeout):
            await first
        third = await asyncio.gather(esme.submit(SubmitSM(short_message=b"third")), return_exceptions=True)
        assert isinstance(third[0], ResponseTimeout)
        bodies = [body for _, _, _, body in raw_smsc.of(CommandID.SUBMIT_SM)]
        assert not any(b"second" in body for body in bodies)
        assert any(b"third" in body for body in bodies)


async def test_alert_notification_is_ignored_and_data_sm_reaches_the_handler(raw_smsc: RawSMSC) -> None:
    received: list[DeliverSM | DataSM] = []

    async def handler(pdu: DeliverSM | DataSM) -> int:
        received.append(pdu)
        return 0

    async with ESMESession(config_for(raw_smsc.port), handler) as esme:
        raw_smsc.push(encode(AlertNotification(sequence_number=5, source_addr="336")))
        raw_smsc.push(encode(DataSM(sequence_number=6, source_addr="336", destination_addr="4242")))
        await raw_smsc.wait_for(lambda: bool(raw_smsc.of(CommandID.DATA_SM_RESP)))
        assert [type(pdu) for pdu in received] == [DataSM]
        assert not raw_smsc.of(CommandID.GENERIC_NACK)
        assert esme.bound


class _FailingHandler(RecordingHandler):
    def on_bound(self, session: SMSCSession) -> None:
        super().on_bound(session)
        raise RuntimeError("on_bound bug")

    def on_closed(self, session: SMSCSession) -> None:
        super().on_closed(session)
        raise RuntimeError("on_closed bug")

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        if bind.system_id == "crash":
            raise RuntimeError("authenticate bug")
        return super().authenticate(session, bind)


async def test_smsc_handler_failures_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    handler = _FailingHandler()
    with caplog.at_level(logging.ERROR, logger="smpp.smsc"):
        async with SMSCServer(handler, name="FAILSAFE") as server:
            with pytest.raises(SMPPError) as caught:
                async with ESMESession(config_for(server.port, system_id="crash")):
                    pass
            assert getattr(caught.value, "status", None) == CommandStatus.ESME_RBINDFAIL
            async with ESMESession(config_for(server.port)) as esme:
                assert esme.system_id == "FAILSAFE"
                assert repr(server.sessions[0]).startswith("<SMSCSession 'edge' bound_trx")
            await handler.wait_for(lambda: len(handler.closed) == 1)
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "authenticate failed" in messages and "on_bound" in messages and "on_closed" in messages


async def test_smsc_answers_enquire_link_before_bind_and_drops_a_silent_esme() -> None:
    handler = RecordingHandler()
    async with SMSCServer(handler, enquire_link_interval=0.05, response_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(encode(EnquireLink(sequence_number=1)))
            header = await reader.readexactly(16)
            assert int.from_bytes(header[4:8], "big") == CommandID.ENQUIRE_LINK_RESP
            writer.write(encode(BindTransceiver(sequence_number=2, password=PASSWORD)))
            data = b""
            async with asyncio.timeout(10):
                while chunk := await reader.read(4096):  # the SMSC probes, nobody answers, it hangs up
                    data += chunk
            pdus = []
            while data and (decoded := decode(data)) is not None:
                pdus.append(decoded[0])
                data = data[decoded[1] :]
            assert any(isinstance(pdu, EnquireLink) for pdu in pdus)
            assert server.sessions == []
        finally:
            writer.close()
            await writer.wait_closed()


async def test_smsc_unbind_waits_for_deliveries_in_flight(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    gate = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(pdu: DeliverSM | DataSM) -> int:
        arrived.set()
        await gate.wait()
        return 0

    esme = await ESMESession(config_for(server.port), slow).__aenter__()
    (session,) = server.sessions
    outcomes: list[object] = []
    assert session.deliver_nowait(DeliverSM(short_message=b"pending"), outcomes.append)
    unbinding = asyncio.create_task(session.unbind())
    await asyncio.wait_for(arrived.wait(), 10)  # the delivery is with the ESME, its answer held back
    assert not unbinding.done() and esme.bound
    gate.set()
    await asyncio.wait_for(unbinding, 10)
    assert outcomes == [DeliverSMResp(sequence_number=outcomes[0].sequence_number)]  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        await esme.wait_closed()
    assert esme.close_reason == "unbound by the SMSC"
    await session.unbind()  # already closed: nothing to do


async def test_submit_many_reads_its_iterable_lazily_and_fails_the_rest_on_close(raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: None  # answer nothing
    pulled: list[int] = []

    def outbox() -> Iterator[SubmitSM]:
        for index in range(1000):
            pulled.append(index)
            yield SubmitSM(short_message=b"%d" % index)

    esme = await ESMESession(config_for(raw_smsc.port, window=3)).__aenter__()
    batch = asyncio.create_task(esme.submit_many(outbox()))
    await raw_smsc.wait_for(lambda: len(raw_smsc.of(CommandID.SUBMIT_SM)) == 3)
    await asyncio.sleep(0.02)
    assert len(pulled) == 3  # the window, not the whole outbox
    raw_smsc.drop()
    outcomes = await asyncio.wait_for(batch, 10)
    assert len(outcomes) == 1000 and all(isinstance(outcome, SessionClosed) for outcome in outcomes)


async def test_submit_many_with_a_failing_iterable_raises_and_the_bind_stays(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc

    def broken_outbox() -> Iterator[SubmitSM]:
        yield SubmitSM(short_message=b"fine")
        raise RuntimeError("outbox query failed")

    async with ESMESession(config_for(server.port)) as esme:
        with pytest.raises(RuntimeError, match="outbox query failed"):
            await esme.submit_many(broken_outbox())
        assert esme.bound
        assert await esme.submit_many([]) == []
        results = await esme.submit_many(SubmitSM(short_message=b"%d" % i) for i in range(3))
        assert [type(result) for result in results] == [SubmitSMResp] * 3


async def test_cancelled_submit_many_stops_reading(raw_smsc: RawSMSC) -> None:
    raw_smsc.script = lambda command_id, sequence, body: None
    pulled: list[int] = []

    def outbox() -> Iterator[SubmitSM]:
        for index in range(100):
            pulled.append(index)
            yield SubmitSM(short_message=b"%d" % index)

    async with ESMESession(config_for(raw_smsc.port, window=2, response_timeout=0.2)) as esme:
        batch = asyncio.create_task(esme.submit_many(outbox()))
        await raw_smsc.wait_for(lambda: len(raw_smsc.of(CommandID.SUBMIT_SM)) == 2)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        await eventually(lambda: esme.in_flight == 0)  # the two sent ones time out
        assert len(pulled) == 2


async def test_smsc_handler_answering_with_the_wrong_pdu_sends_generic_nack(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    handler.answer = lambda session, pdu: DeliverSMResp()  # not an answer to submit_sm
    async with ESMESession(config_for(server.port)) as esme:
        with pytest.raises(SMPPError) as caught:
            await esme.submit(SubmitSM())
        assert getattr(caught.value, "status", None) == CommandStatus.ESME_RSYSERR
        assert esme.bound
