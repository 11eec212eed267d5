"""Our ESME and SMSC sessions against each other (and a raw SMSC) over 127.0.0.1: window, throttle,
throttled retry order, response and enquire_link timeouts, reconnect, graceful unbind, SMSC rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smpp.aio import ESMEClient, ESMEConfig, ESMESession, SMSCServer, SMSCSession
from smpp.codec import decode, encode
from smpp.constants import BindType, CommandID, CommandStatus
from smpp.errors import LocalProtocolError, NegativeResponseError, ResponseTimeout, SessionClosed
from smpp.pdu import (
    PDU,
    BindReceiver,
    BindTransceiver,
    DataSM,
    DeliverSM,
    EnquireLink,
    SubmitSM,
    SubmitSMResp,
)
from tests.integration.smpp.smpp_peers import PASSWORD, RawSMSC, RecordingHandler, response
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def config_for(port: int, **overrides: object) -> ESMEConfig:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "echat",
        "password": PASSWORD,
        "response_timeout": 10.0,
    }
    settings.update(overrides)
    return ESMEConfig(**settings)  # type: ignore[arg-type]


def texts(pdus: list[PDU]) -> list[bytes]:
    return [pdu.short_message for pdu in pdus if isinstance(pdu, SubmitSM)]


class Held:
    """An SMSC handler behaviour that answers nothing until the test releases requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[SMSCSession, PDU]] = []
        self.most = 0

    def __call__(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        if not isinstance(pdu, SubmitSM):
            return pdu.response_class() if pdu.response_class else None
        self.requests.append((session, pdu))
        self.most = max(self.most, len(self.requests))
        return None

    def release(self, count: int | None = None) -> None:
        for session, pdu in self.requests[:count]:
            session.respond(pdu, SubmitSMResp(message_id="ok"))
        del self.requests[:count]


# --- window, throttle, order ----------------------------------------------------------------------


async def test_window_is_never_exceeded_at_the_server(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    held = Held()
    handler.answer = held
    async with ESMESession(config_for(server.port, window=4)) as esme:
        assert esme.window == 4
        pdus = [SubmitSM(short_message=b"%d" % i) for i in range(15)]
        submitting = asyncio.create_task(esme.submit_many(pdus))
        for released in range(0, 15, 2):
            expected = min(4, 15 - released)
            await eventually(lambda: len(held.requests) == expected)  # noqa: B023 - awaited right here
            await asyncio.sleep(0.01)  # room for a request beyond the window to show up (it must not)
            assert len(held.requests) == expected
            assert esme.in_flight == expected
            held.release(2)
        outcomes = await submitting
    assert all(isinstance(outcome, SubmitSMResp) for outcome in outcomes)
    assert held.most == 4
    assert texts(handler.requests) == [b"%d" % i for i in range(15)]


async def test_tps_throttle_paces_submissions(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    def timed(session: SMSCSession, pdu: PDU) -> PDU | None:
        arrivals.append(loop.time())
        return SubmitSMResp(message_id="t")

    handler.answer = timed
    async with ESMESession(config_for(server.port, window=50, tps=100.0)) as esme:
        outcomes = await esme.submit_many([SubmitSM(short_message=b"x") for _ in range(30)])
    assert all(isinstance(outcome, SubmitSMResp) for outcome in outcomes)
    # 30 messages at 100/s: the bucket holds at most 50 ms worth (5 tokens, earned while a slow machine
    # binds), so at least 25 had to be earned one by one (a lower bound only: a slow machine can only
    # make it longer).
    assert arrivals[-1] - arrivals[0] >= 0.24


async def test_a_submission_overtakes_the_bulk_waiting_for_the_window(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    held = Held()
    handler.answer = held
    answered: list[bytes] = []

    def answer_of(text: bytes) -> Callable[[object], None]:
        return lambda outcome: answered.append(text) if isinstance(outcome, SubmitSMResp) else None

    async with ESMESession(config_for(server.port, window=2)) as esme:
        for index in range(6):  # a campaign's burst: two in flight, four waiting
            esme.submit_nowait(
                SubmitSM(short_message=b"bulk%d" % index), answer_of(b"bulk%d" % index), bulk=True
            )
        await eventually(lambda: len(held.requests) == 2)
        assert esme.queued == 4
        esme.submit_nowait(SubmitSM(short_message=b"reply"), answer_of(b"reply"))
        while len(answered) < 7:
            await eventually(lambda: bool(held.requests))
            held.release(1)
            await eventually(lambda: len(answered) + len(held.requests) + esme.queued == 7)  # noqa: B023
    # the reply took the first room in the window; the bulk kept its own order
    assert texts(handler.requests) == [b"bulk0", b"bulk1", b"reply", b"bulk2", b"bulk3", b"bulk4", b"bulk5"]
    assert answered == texts(handler.requests)


@pytest.mark.parametrize("status", [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL])
async def test_throttled_request_is_resent_before_later_ones(
    smsc: tuple[SMSCServer, RecordingHandler], status: int
) -> None:
    server, handler = smsc
    throttled: list[bytes] = []

    def throttle_third_once(session: SMSCSession, pdu: PDU) -> PDU | None:
        assert isinstance(pdu, SubmitSM)
        if pdu.short_message == b"2" and not throttled:
            throttled.append(pdu.short_message)
            return SubmitSMResp(command_status=status)
        return SubmitSMResp(message_id=pdu.short_message.decode())

    handler.answer = throttle_third_once
    async with ESMESession(config_for(server.port, window=5, throttle_backoff=0.05)) as esme:
        outcomes = await esme.submit_many([SubmitSM(short_message=b"%d" % i) for i in range(12)])
    assert [outcome.message_id for outcome in outcomes if isinstance(outcome, SubmitSMResp)] == [
        str(i) for i in range(12)
    ]
    seen = texts(handler.requests)
    assert seen.count(b"2") == 2
    resent_at = seen.index(b"2", seen.index(b"2") + 1)
    assert resent_at < seen.index(b"5")  # nothing submitted after it went out before its retry


async def test_final_error_status_raises_negative_response(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    handler.answer = lambda session, pdu: SubmitSMResp(command_status=CommandStatus.ESME_RINVDSTADR)
    async with ESMESession(config_for(server.port)) as esme:
        with pytest.raises(NegativeResponseError) as caught:
            await esme.submit(SubmitSM(destination_addr="bad"))
        assert caught.value.status == CommandStatus.ESME_RINVDSTADR
        assert isinstance(caught.value.response, SubmitSMResp)


# --- timeouts -----------------------------------------------------------------------------------


async def test_response_timeout_fails_only_that_request(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    late: list[tuple[SMSCSession, PDU]] = []

    def ignore_slow(session: SMSCSession, pdu: PDU) -> PDU | None:
        if isinstance(pdu, SubmitSM) and pdu.short_message == b"slow":
            late.append((session, pdu))
            return None
        return SubmitSMResp(message_id="fast")

    handler.answer = ignore_slow
    async with ESMESession(config_for(server.port, response_timeout=0.3)) as esme:
        outcomes = await asyncio.gather(
            esme.submit(SubmitSM(short_message=b"a")),
            esme.submit(SubmitSM(short_message=b"slow")),
            esme.submit(SubmitSM(short_message=b"c")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], SubmitSMResp) and isinstance(outcomes[2], SubmitSMResp)
        assert isinstance(outcomes[1], ResponseTimeout)
        assert esme.bound and esme.in_flight == 0
        ((session, request),) = late
        session.respond(request, SubmitSMResp(message_id="too-late"))  # dropped and logged by the ESME
        assert isinstance(await esme.submit(SubmitSM(short_message=b"d")), SubmitSMResp)


async def test_enquire_link_timeout_drops_and_client_reconnects(raw_smsc: RawSMSC) -> None:
    states: list[bool] = []
    config = config_for(
        raw_smsc.port,
        enquire_link_interval=0.1,
        enquire_link_timeout=0.2,
        reconnect_min=0.01,
        reconnect_max=0.05,
        name="keepalive",
    )
    async with ESMEClient(config, on_state=lambda name, bound: states.append(bound)) as client:
        await client.wait_bound(10)
        await eventually(lambda: client.connects >= 2)
        assert raw_smsc.of(CommandID.ENQUIRE_LINK)
        assert states[:3] == [True, False, True]
        assert client.last_error is not None and "enquire_link timeout" in str(client.last_error)
        raw_smsc.script = lambda command_id, sequence, body: response(command_id, sequence, body=b"R1\0")
        await eventually(lambda: client.bound)
        result = await client.submit(SubmitSM(short_message=b"after reconnect"))
        assert isinstance(result, SubmitSMResp) and result.message_id == "R1"


async def test_enquire_link_answered_keeps_the_bind(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    async with ESMESession(config_for(server.port, enquire_link_interval=0.05)) as esme:
        await handler.wait_for(lambda: sum(isinstance(p, EnquireLink) for p in handler.requests) >= 2)
        assert esme.bound


async def test_client_keeps_retrying_a_refused_bind(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    config = config_for(server.port, password="wrong", reconnect_min=0.01, reconnect_max=0.02)
    async with ESMEClient(config) as client:
        await handler.wait_for(lambda: len(handler.binds) >= 3)
        assert not client.bound and client.connects == 0 and client.session is None
        assert isinstance(client.last_error, NegativeResponseError)
        with pytest.raises(TimeoutError):
            await client.wait_bound(0.05)


async def test_client_submit_fails_when_no_bind_comes(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    config = config_for(
        server.port, password="wrong", reconnect_min=0.01, reconnect_max=0.02, response_timeout=0.1
    )
    async with ESMEClient(config) as client:
        with pytest.raises(SessionClosed):
            await client.submit(SubmitSM(short_message=b"nowhere"))


# --- unbind ------------------------------------------------------------------------------------


async def test_graceful_unbind_drains_in_flight_first(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    held = Held()
    handler.answer = held
    outcomes: list[object] = []
    esme = await ESMESession(config_for(server.port)).__aenter__()
    for index in range(3):
        esme.submit_nowait(SubmitSM(short_message=b"%d" % index), outcomes.append)
    await eventually(lambda: len(held.requests) == 3)
    unbinding = asyncio.create_task(esme.unbind())
    await asyncio.sleep(0)  # one loop turn: the unbind is now waiting for the three answers
    assert not unbinding.done() and esme.bound and handler.closed == []
    with pytest.raises(SessionClosed):
        esme.submit_nowait(SubmitSM(short_message=b"refused while draining"), outcomes.append)
    held.release()
    await asyncio.wait_for(unbinding, 10)
    assert [type(outcome) for outcome in outcomes] == [SubmitSMResp] * 3
    assert esme.closed and esme.close_reason == "unbound"
    await handler.wait_for(lambda: len(handler.closed) == 1)


def sent_flags(outcomes: list[object]) -> list[bool]:
    """Per outcome, whether the ``SessionClosed`` it is says the request may have reached the SMSC."""
    assert all(isinstance(outcome, SessionClosed) for outcome in outcomes), outcomes
    return [outcome.sent for outcome in outcomes if isinstance(outcome, SessionClosed)]


async def test_connection_lost_tells_requests_sent_from_requests_never_sent(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    """The SMSC drops the connection with the window full: the requests it holds may have been taken
    (sent), those still waiting for the window certainly were not."""
    server, handler = smsc
    held = Held()
    handler.answer = held
    outcomes: list[object] = []
    esme = await ESMESession(config_for(server.port, window=2)).__aenter__()
    for index in range(5):
        esme.submit_nowait(SubmitSM(short_message=b"%d" % index), outcomes.append)
    await eventually(lambda: len(held.requests) == 2)
    held.requests[0][0].drop("test: connection dropped by the SMSC")
    await esme.wait_closed()
    assert sent_flags(outcomes) == [True, True, False, False, False]
    assert texts(handler.requests) == [b"0", b"1"]


async def test_request_still_in_the_write_buffer_was_never_sent(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    outcomes: list[object] = []
    esme = await ESMESession(config_for(server.port)).__aenter__()
    esme.submit_nowait(SubmitSM(short_message=b"buffered"), outcomes.append)
    esme.abort()  # in the same loop turn: its bytes are buffered, not yet handed to the transport
    await esme.wait_closed()
    assert sent_flags(outcomes) == [False]
    assert esme.in_flight == 0


async def test_stop_sending_gives_back_the_queue_and_waits_for_requests_in_flight(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    held = Held()
    handler.answer = held
    outcomes: list[object] = []
    esme = await ESMESession(config_for(server.port, window=2)).__aenter__()
    for index in range(5):
        esme.submit_nowait(SubmitSM(short_message=b"%d" % index), outcomes.append)
    batch = asyncio.create_task(esme.submit_many([SubmitSM(short_message=b"batch")]))
    await eventually(lambda: len(held.requests) == 2)
    esme.stop_sending()
    assert sent_flags(outcomes) == [False, False, False]  # at once: the three that waited for the window
    assert "stopped sending" in str(outcomes[0])
    (batch_outcome,) = await asyncio.wait_for(batch, 10)
    assert isinstance(batch_outcome, SessionClosed) and not batch_outcome.sent
    with pytest.raises(SessionClosed, match="stopped sending") as refused:
        esme.submit_nowait(SubmitSM(short_message=b"after"), outcomes.append)
    assert not refused.value.sent
    assert esme.bound and esme.in_flight == 2
    held.release()
    await eventually(lambda: len(outcomes) == 5)
    assert [type(outcome) for outcome in outcomes[3:]] == [SubmitSMResp, SubmitSMResp]
    await asyncio.wait_for(esme.unbind(), 10)
    assert texts(handler.requests) == [b"0", b"1"]


async def test_submissions_refused_by_a_closed_session_were_never_sent(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    esme = ESMESession(config_for(server.port))
    async with esme:
        pass
    with pytest.raises(SessionClosed) as refused:
        esme.submit_nowait(SubmitSM(), lambda outcome: None)
    assert not refused.value.sent
    with pytest.raises(SessionClosed) as refused:
        await esme.submit(SubmitSM())
    assert not refused.value.sent


async def test_session_can_be_opened_again_after_it_closed(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    esme = ESMESession(config_for(server.port))
    async with esme:
        assert esme.system_id == "smsc"
    async with esme:
        assert isinstance(await esme.submit(SubmitSM()), SubmitSMResp)
    assert len(handler.bound) == 2


async def test_server_close_unbinds_esmes(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    esme = await ESMESession(config_for(server.port)).__aenter__()
    await server.close()
    async with asyncio.timeout(10):
        await esme.wait_closed()
    assert esme.close_reason == "unbound by the SMSC"
    assert server.sessions == []


# --- SMSC-side rules -----------------------------------------------------------------------------


async def raw_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pdu: PDU) -> PDU:
    writer.write(encode(pdu))
    header = await reader.readexactly(16)
    body = await reader.readexactly(int.from_bytes(header[:4], "big") - 16)
    decoded = decode(header + body)
    assert decoded is not None
    return decoded[0]


async def test_smsc_refuses_submit_from_receiver_and_a_second_bind(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        bound = await raw_exchange(
            reader, writer, BindReceiver(sequence_number=1, system_id="rx", password=PASSWORD)
        )
        assert bound.command_status == 0
        refused = await raw_exchange(reader, writer, SubmitSM(sequence_number=2, short_message=b"no"))
        assert refused == SubmitSMResp(sequence_number=2, command_status=CommandStatus.ESME_RINVBNDSTS)
        again = await raw_exchange(reader, writer, BindTransceiver(sequence_number=3, password=PASSWORD))
        assert again.command_status == CommandStatus.ESME_RALYBND
        alive = await raw_exchange(reader, writer, EnquireLink(sequence_number=4))
        assert alive.command_status == 0 and alive.sequence_number == 4
        assert [pdu for pdu in handler.requests if isinstance(pdu, SubmitSM)] == []
        assert server.sessions[0].bind_type is BindType.RECEIVER
    finally:
        writer.close()
        await writer.wait_closed()


async def test_smsc_bind_refused_then_accepted_on_the_same_connection(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, handler = smsc
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        refused = await raw_exchange(reader, writer, BindTransceiver(sequence_number=1, password="nope"))
        assert refused.command_status == CommandStatus.ESME_RINVPASWD
        assert server.sessions == []
        accepted = await raw_exchange(reader, writer, BindTransceiver(sequence_number=2, password=PASSWORD))
        assert accepted.command_status == 0
        assert len(server.sessions) == 1
    finally:
        writer.close()
        await writer.wait_closed()


async def test_smsc_deliver_window(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc  # deliver_window=5
    gate = asyncio.Event()
    received: list[DeliverSM | DataSM] = []

    async def slow_handler(pdu: DeliverSM | DataSM) -> int:
        received.append(pdu)
        await gate.wait()
        return 0

    async with ESMESession(config_for(server.port), slow_handler):
        (session,) = server.sessions
        assert session.can_receive and session.window == 5
        outcomes: list[object] = []
        accepted = [
            session.deliver_nowait(DeliverSM(short_message=b"%d" % i), outcomes.append) for i in range(6)
        ]
        assert accepted == [True] * 5 + [False]
        assert session.in_flight == 5
        sixth = asyncio.create_task(session.deliver(DeliverSM(short_message=b"6")))
        await eventually(lambda: len(received) == 5)
        await asyncio.sleep(0.02)
        assert not sixth.done() and len(received) == 5
        gate.set()
        result = await asyncio.wait_for(sixth, 10)
        assert result.command_status == 0
        await eventually(lambda: len(outcomes) == 5)
        assert session.in_flight == 0


async def test_smsc_cannot_deliver_to_a_transmitter(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    async with ESMESession(config_for(server.port, bind_type=BindType.TRANSMITTER)):
        (session,) = server.sessions
        assert not session.can_receive
        assert not session.deliver_nowait(DeliverSM(), lambda outcome: None)
        with pytest.raises(LocalProtocolError):
            await session.deliver(DeliverSM())


async def test_esme_without_handler_answers_rx_t_appn(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc
    async with ESMESession(config_for(server.port)):
        (session,) = server.sessions
        answer = await session.deliver(DeliverSM(short_message=b"nobody home"))
        assert answer.command_status == CommandStatus.ESME_RX_T_APPN


async def test_handler_exception_in_smsc_answers_rsyserr(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, handler = smsc

    def broken(session: SMSCSession, pdu: PDU) -> PDU | None:
        raise RuntimeError("simulator bug")

    handler.answer = broken
    async with ESMESession(config_for(server.port)) as esme:
        with pytest.raises(NegativeResponseError) as caught:
            await esme.submit(SubmitSM())
        assert caught.value.status == CommandStatus.ESME_RSYSERR


def test_sessions_run_on_uvloop() -> None:
    """uvloop's TCP transport implements asyncio's interface without subclassing asyncio.Transport:
    both ends still bind, submit and unbind on it (bench/per_bind.py --uvloop measures it)."""
    uvloop = pytest.importorskip("uvloop")

    async def exchange() -> list[bytes]:
        handler = RecordingHandler()
        async with SMSCServer(handler, deliver_window=5) as server:
            async with ESMESession(config_for(server.port, window=4)) as esme:
                answers = await asyncio.gather(
                    *(esme.submit(SubmitSM(short_message=b"%d" % n)) for n in range(8))
                )
                assert all(isinstance(answer, SubmitSMResp) for answer in answers)
            return texts(handler.requests)

    assert sorted(uvloop.run(exchange())) == [b"%d" % n for n in range(8)]
