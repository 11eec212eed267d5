"""ESMESession message handlers without a task per PDU: a plain function returning the command_status,
or a future of it. Our SMSCServer pushes deliver_sm / data_sm over 127.0.0.1 and reads the answers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from smpp.aio import ESMEConfig, ESMESession, SMSCServer
from smpp.constants import CommandStatus
from smpp.errors import SessionClosed
from smpp.pdu import DataSM, DataSMResp, DeliverSM, DeliverSMResp
from tests.integration.smpp.smpp_peers import PASSWORD, RecordingHandler
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def config_for(port: int) -> ESMEConfig:
    return ESMEConfig(
        host="127.0.0.1",
        port=port,
        system_id="echat",
        password=PASSWORD,
        response_timeout=10.0,
        name="handlers",
    )


def message_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "bind[handlers].message"]


def text(pdu: DeliverSM | DataSM) -> bytes:
    return pdu.short_message if isinstance(pdu, DeliverSM) else b""


class Pending:
    """A handler returning a new future for each PDU, kept for the test to settle."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[int]] = []
        self.arrived = asyncio.Event()

    def __call__(self, pdu: DeliverSM | DataSM) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.arrived.set()
        return future

    async def wait_for(self, count: int) -> None:
        while len(self.futures) < count:
            self.arrived.clear()
            await self.arrived.wait()


async def test_a_plain_handler_answers_with_the_status_it_returns(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, _ = smsc
    seen: list[DeliverSM | DataSM] = []

    def handler(pdu: DeliverSM | DataSM) -> int:
        seen.append(pdu)
        return 0 if text(pdu) == b"ok" else CommandStatus.ESME_RX_P_APPN

    async with ESMESession(config_for(server.port), handler):
        (session,) = server.sessions
        ok = await session.deliver(DeliverSM(short_message=b"ok"))
        refused = await session.deliver(DeliverSM(short_message=b"no"))
        data = await session.deliver(DataSM(source_addr="336"))
    assert (type(ok), ok.command_status) == (DeliverSMResp, 0)
    assert refused.command_status == CommandStatus.ESME_RX_P_APPN
    assert (type(data), data.command_status) == (DataSMResp, CommandStatus.ESME_RX_P_APPN)
    assert [text(pdu) for pdu in seen] == [b"ok", b"no", b""]


async def test_a_future_is_answered_when_it_is_done_and_no_task_is_made(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, _ = smsc
    handler = Pending()
    async with ESMESession(config_for(server.port), handler):
        (session,) = server.sessions
        first = asyncio.ensure_future(session.deliver(DeliverSM(short_message=b"one")))
        second = asyncio.ensure_future(session.deliver(DataSM()))
        await handler.wait_for(2)
        assert message_tasks() == []
        assert not first.done() and not second.done()
        handler.futures[1].set_result(CommandStatus.ESME_RX_T_APPN)
        handler.futures[0].set_result(0)
        assert (await first).command_status == 0
        answer = await second
        assert (type(answer), answer.command_status) == (DataSMResp, CommandStatus.ESME_RX_T_APPN)


async def test_a_done_future_is_answered_at_once(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, _ = smsc
    loop = asyncio.get_running_loop()

    def handler(pdu: DeliverSM | DataSM) -> asyncio.Future[int]:
        future: asyncio.Future[int] = loop.create_future()
        future.set_result(CommandStatus.ESME_RX_R_APPN)
        return future

    async with ESMESession(config_for(server.port), handler):
        (session,) = server.sessions
        answer = await session.deliver(DeliverSM())
    assert answer.command_status == CommandStatus.ESME_RX_R_APPN


async def test_failures_are_answered_rx_t_appn_and_logged(
    smsc: tuple[SMSCServer, RecordingHandler], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = smsc
    loop = asyncio.get_running_loop()

    def handler(pdu: DeliverSM | DataSM) -> asyncio.Future[int]:
        if text(pdu) == b"raise":
            raise RuntimeError("handler bug")
        future: asyncio.Future[int] = loop.create_future()
        future.set_exception(RuntimeError("database down"))
        return future

    with caplog.at_level(logging.ERROR, logger="smpp.esme"):
        async with ESMESession(config_for(server.port), handler):
            (session,) = server.sessions
            raised = await session.deliver(DeliverSM(short_message=b"raise"))
            failed = await session.deliver(DeliverSM(short_message=b"fail"))
    assert raised.command_status == failed.command_status == CommandStatus.ESME_RX_T_APPN
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert [str(error) for error in logged] == ["handler bug", "database down"]


async def test_a_cancelled_future_is_not_answered(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, _ = smsc
    pending = Pending()

    def handler(pdu: DeliverSM | DataSM) -> asyncio.Future[int] | int:
        return 0 if text(pdu) == b"later" else pending(pdu)

    async with ESMESession(config_for(server.port), handler):
        (session,) = server.sessions
        dropped = asyncio.ensure_future(session.deliver(DeliverSM(short_message=b"dropped")))
        await pending.wait_for(1)
        pending.futures[0].cancel()
        # Answers come back in order on one connection: once the later one is in, the cancelled one
        # would have been too.
        assert (await session.deliver(DeliverSM(short_message=b"later"))).command_status == 0
        assert not dropped.done()
        dropped.cancel()


async def test_a_coroutine_handler_still_runs_in_a_task(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, _ = smsc
    running: list[int] = []

    async def handler(pdu: DeliverSM | DataSM) -> int:
        running.append(len(message_tasks()))
        await asyncio.sleep(0)
        return CommandStatus.ESME_RX_P_APPN

    async with ESMESession(config_for(server.port), handler):
        (session,) = server.sessions
        answer = await session.deliver(DeliverSM())
    assert answer.command_status == CommandStatus.ESME_RX_P_APPN
    assert running == [1]


async def test_a_future_done_after_the_connection_closed_is_dropped_quietly(
    smsc: tuple[SMSCServer, RecordingHandler], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = smsc
    handler = Pending()
    esme = ESMESession(config_for(server.port), handler)
    async with esme:
        (session,) = server.sessions
        delivery = asyncio.ensure_future(session.deliver(DeliverSM()))
        await handler.wait_for(1)
        esme.abort()
        await esme.wait_closed()
    handler.futures[0].set_result(0)
    await asyncio.sleep(0)  # the done callback runs
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    with pytest.raises(SessionClosed):
        await delivery


async def test_unbind_waits_for_the_messages_the_handler_still_holds(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    """A message unanswered when the session closes would be delivered again, maybe to another process
    that cannot see yet what this one stores: unbind answers what the handler holds first."""
    server, _ = smsc
    handler = Pending()
    esme = ESMESession(config_for(server.port), handler)
    async with esme:
        (session,) = server.sessions
        held = asyncio.ensure_future(session.deliver(DeliverSM(short_message=b"held")))
        await handler.wait_for(1)
        unbinding = asyncio.ensure_future(esme.unbind())
        await eventually(lambda: esme._all_answered is not None, what="unbind waits for the answer")
        assert session.bound and not held.done()
        handler.futures[0].set_result(0)
        assert (await held).command_status == 0
        await unbinding
        assert esme.unbind_answered


async def test_unbind_waits_for_a_coroutine_handler_too(smsc: tuple[SMSCServer, RecordingHandler]) -> None:
    server, _ = smsc
    release = asyncio.Event()

    async def handler(pdu: DeliverSM | DataSM) -> int:
        await release.wait()
        return 0

    esme = ESMESession(config_for(server.port), handler)
    async with esme:
        (session,) = server.sessions
        delivery = asyncio.ensure_future(session.deliver(DeliverSM(short_message=b"task")))
        await eventually(lambda: bool(message_tasks()))
        unbinding = asyncio.ensure_future(esme.unbind())
        await eventually(lambda: esme._all_answered is not None, what="unbind waits for the answer")
        release.set()
        await unbinding
        assert (await delivery).command_status == 0


async def test_unbind_waits_at_most_the_response_timeout_for_an_answer(
    smsc: tuple[SMSCServer, RecordingHandler],
) -> None:
    server, _ = smsc
    handler = Pending()
    esme = ESMESession(dataclasses.replace(config_for(server.port), response_timeout=0.3), handler)
    async with esme:
        (session,) = server.sessions
        never = asyncio.ensure_future(session.deliver(DeliverSM(short_message=b"never")))
        await handler.wait_for(1)
        await asyncio.wait_for(esme.unbind(), 5)
    with pytest.raises(SessionClosed):
        await never
