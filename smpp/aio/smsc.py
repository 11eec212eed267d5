"""asyncio SMSC side: ``SMSCServer`` accepts ESMEs, each connection an ``SMSCSession``.

The application (the simulator) plugs in an ``SMSCHandler`` of plain synchronous callbacks, so the
hot path creates no task per PDU: a handler returns the response, or None to answer later with
``session.respond``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

from smpp.aio.transport import Callback, Outcome, Outstanding, SessionProtocol, WireTap
from smpp.connection import Role, SessionState
from smpp.constants import BindType, CommandID, CommandStatus
from smpp.errors import LocalProtocolError, ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import (
    PDU,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSM,
    DeliverSM,
    GenericNack,
    Unbind,
    UnbindResp,
)

_BIND_RESPONSES: Final[dict[int, type[BindTransmitterResp | BindReceiverResp | BindTransceiverResp]]] = {
    CommandID.BIND_TRANSMITTER: BindTransmitterResp,
    CommandID.BIND_RECEIVER: BindReceiverResp,
    CommandID.BIND_TRANSCEIVER: BindTransceiverResp,
}
_RECEIVING_STATES: Final = frozenset({SessionState.BOUND_RX, SessionState.BOUND_TRX})
#: Seconds a connection may stay open without a successful bind (SMPP 5.0 §2.10, session_init_timer).
SESSION_INIT_TIMER: Final = 30.0

log = logging.getLogger("smpp.smsc")


@dataclass(frozen=True, slots=True)
class BindRequest:
    """What an ESME asked for when it bound; the password is never logged."""

    system_id: str
    password: str
    system_type: str
    bind_type: BindType
    peer: tuple[str, int]
    interface_version: int
    addr_ton: int
    addr_npi: int
    address_range: str


class SMSCHandler(Protocol):
    """The application behind the SMSC. All callbacks are synchronous and must not block."""

    def authenticate(self, session: SMSCSession, bind: BindRequest) -> int:
        """The command_status of the bind response: 0 accepts the bind."""
        ...

    def on_request(self, session: SMSCSession, pdu: PDU) -> PDU | None:
        """The response to a request of a bound ESME, or None to answer later (or never)."""
        ...

    def on_bound(self, session: SMSCSession) -> None: ...

    def on_closed(self, session: SMSCSession) -> None: ...


class SMSCSession(SessionProtocol):
    """One ESME connection on the SMSC side; it owns the window of deliver_sm pushed to that ESME."""

    reads_only_while_writing = True

    def __init__(self, server: SMSCServer) -> None:
        self._server = server
        self.bind_type: BindType | None = None
        self.system_id = ""
        self.window = server.deliver_window
        self.response_timeout = server.response_timeout
        super().__init__(
            Role.SMSC,
            server.name,
            enquire_link_interval=server.enquire_link_interval,
            enquire_link_timeout=server.response_timeout,
        )
        self._in_flight = 0
        self._window_waiters: deque[asyncio.Future[None]] = deque()
        self._was_bound = False
        self._init_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<SMSCSession {self.system_id!r} {self.state.value} {self.peer[0]}:{self.peer[1]}>"

    @property
    def in_flight(self) -> int:
        """deliver_sm / data_sm pushed and not yet answered."""
        return self._in_flight

    @property
    def can_receive(self) -> bool:
        """Bound as a receiver or a transceiver: deliver_sm may be pushed."""
        return self._transport is not None and self._connection.state in _RECEIVING_STATES

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        timeout = self._server.session_init_timer
        if timeout is not None:
            self._init_timer = self._loop.call_later(timeout, self._session_init_expired)

    def _session_init_expired(self) -> None:
        self._init_timer = None
        self.log.info(
            "%s: %s:%d not bound within %gs (session_init_timer): closing",
            self.name,
            *self.peer,
            self._server.session_init_timer,
        )
        if self.close_reason is None:
            self.close_reason = "not bound within session_init_timer"
        # abort, not drop: a peer that does not read would hold a closing transport open for ever
        self.abort()

    # --- pushing messages to the ESME ---------------------------------------------------------------

    async def deliver(self, pdu: DeliverSM | DataSM, *, timeout: float = 10.0) -> PDU:  # noqa: ASYNC109
        """Push ``pdu`` once the deliver window has room; the ESME's response, whatever its status.

        Raises ``ResponseTimeout``, ``SessionClosed``, or ``LocalProtocolError`` when the bind cannot
        receive."""
        while self._in_flight >= self.window:
            if self._transport is None:
                break
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._window_waiters.append(waiter)
            await waiter
        answer: asyncio.Future[PDU] = self._loop.create_future()
        self._send_windowed(Outstanding(pdu, None, answer, windowed=True), timeout)
        return await answer

    def deliver_nowait(
        self, pdu: DeliverSM | DataSM, callback: Callback, *, timeout: float | None = None
    ) -> bool:
        """Push ``pdu`` now if the window has room and the bind can receive, and call ``callback`` with
        the response or the ``SMPPError``; False (nothing sent) otherwise."""
        if self._in_flight >= self.window or not self.can_receive:
            return False
        self._send_windowed(
            Outstanding(pdu, callback, None, windowed=True),
            self.response_timeout if timeout is None else timeout,
        )
        return True

    def _send_windowed(self, request: Outstanding, timeout: float) -> None:
        self.send_request(request, timeout)
        self._in_flight += 1

    def _request_done(self, request: Outstanding, outcome: Outcome) -> None:
        if request.windowed:
            self._in_flight -= 1
            waiters = self._window_waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break
        request.finish(outcome)

    # --- ending -----------------------------------------------------------------------------------

    async def unbind(self) -> None:
        """Wait for pushed messages to be answered, unbind, close."""
        if self._transport is None:
            return
        if self.bound:
            while self._in_flight and self._transport is not None:
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._window_waiters.append(waiter)
                await waiter
            answer: asyncio.Future[PDU] = self._loop.create_future()
            try:
                self.send_request(Outstanding(Unbind(), None, answer), self.response_timeout)
                await answer
            except (ResponseTimeout, SessionClosed, SMPPError) as error:
                self.log.warning("%s: unbind of %r not answered: %s", self.name, self.system_id, error)
        self.drop("unbound")
        await self.wait_closed()

    def _session_ended(self, error: SessionClosed) -> None:
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        waiters = list(self._window_waiters)
        self._window_waiters.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)  # the sender finds the session closed and fails with it
        self._server._session_closed(self)
        if self._was_bound:
            try:
                self._server.handler.on_closed(self)
            except Exception:
                self.log.exception("%s: on_closed handler failed", self.name)

    # --- requests from the ESME -------------------------------------------------------------------

    def _request_received(self, pdu: PDU) -> None:
        command_id = pdu.command_id
        if command_id in _BIND_RESPONSES:
            assert isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver)
            self._bind(pdu)
            return
        if command_id == CommandID.UNBIND:
            self.respond(pdu, UnbindResp())
            self.drop("unbound by the ESME")
            return
        if command_id == CommandID.ENQUIRE_LINK and not self.bound:
            self._answer_enquire_link(pdu)
            return
        try:
            response = self._server.handler.on_request(self, pdu)
        except Exception:
            self.log.exception(
                "%s: handler failed on %s from %r", self.name, type(pdu).__name__, self.system_id
            )
            response_class = pdu.response_class or GenericNack
            response = response_class(command_status=CommandStatus.ESME_RSYSERR)
        if response is not None:
            try:
                self.respond(pdu, response)
            except LocalProtocolError:
                self.log.exception(
                    "%s: handler answered %s with %s", self.name, type(pdu).__name__, type(response).__name__
                )
                self.respond(pdu, GenericNack(command_status=CommandStatus.ESME_RSYSERR))

    def _bind(self, pdu: BindTransmitter | BindReceiver | BindTransceiver) -> None:
        bind_type = BindType(pdu.command_id)
        request = BindRequest(
            system_id=pdu.system_id,
            password=pdu.password,
            system_type=pdu.system_type,
            bind_type=bind_type,
            peer=self.peer,
            interface_version=pdu.interface_version,
            addr_ton=pdu.addr_ton,
            addr_npi=pdu.addr_npi,
            address_range=pdu.address_range,
        )
        server = self._server
        try:
            status = server.handler.authenticate(self, request)
        except Exception:
            self.log.exception("%s: authenticate failed for %r", self.name, pdu.system_id)
            status = CommandStatus.ESME_RBINDFAIL
        response_class = _BIND_RESPONSES[pdu.command_id]
        # system_id even on refusal: SMPP allows dropping the body, but some ESMEs cannot parse that.
        self.respond(pdu, response_class(command_status=status, system_id=server.name))
        if status != 0:
            self.log.info(
                "%s: bind %s of %r from %s:%d refused: 0x%08X",
                self.name,
                bind_type.name.lower(),
                pdu.system_id,
                *self.peer,
                status,
            )
            return
        self.bind_type = bind_type
        self.system_id = pdu.system_id
        self._was_bound = True
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        server._session_bound(self)
        self._start_keepalive()
        self.log.info(
            "%s: %r bound %s from %s:%d", self.name, pdu.system_id, bind_type.name.lower(), *self.peer
        )
        try:
            server.handler.on_bound(self)
        except Exception:
            self.log.exception("%s: on_bound handler failed", self.name)


class SMSCServer:
    """Listens for ESMEs. ``async with`` (or ``start()`` / ``close()``); ``port`` is the real port."""

    def __init__(
        self,
        handler: SMSCHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl.SSLContext | None = None,
        deliver_window: int = 10,
        enquire_link_interval: float | None = None,
        response_timeout: float = 10.0,
        session_init_timer: float | None = SESSION_INIT_TIMER,
        name: str = "smsc",
    ) -> None:
        if deliver_window < 1:
            raise ValueError("deliver_window must be at least 1")
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl = ssl
        self.deliver_window = deliver_window
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout
        #: Seconds a connection may stay unbound before it is closed; None: no limit. Read by each
        #: new connection, so a change applies to those accepted after it.
        self.session_init_timer = session_init_timer
        self.name = name
        self._server: asyncio.Server | None = None
        self._connected: set[SMSCSession] = set()
        self._bound: dict[SMSCSession, None] = {}  # insertion-ordered set
        self._wiretap: WireTap | None = None

    @property
    def wiretap(self) -> WireTap | None:
        """Sees every PDU of every connection (see ``SessionProtocol.wiretap``), from the first bind."""
        return self._wiretap

    @wiretap.setter
    def wiretap(self, wiretap: WireTap | None) -> None:
        self._wiretap = wiretap
        for session in self._connected:
            session.wiretap = wiretap

    @property
    def sessions(self) -> list[SMSCSession]:
        """The bound sessions, oldest first."""
        return list(self._bound)

    @property
    def connections(self) -> int:
        """Open TCP connections, bound or not."""
        return len(self._connected)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, self.host, self.port, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop listening, unbind every bound ESME politely (at most ``grace`` seconds), drop the rest."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        bound = list(self._bound)
        if bound:
            done, pending = await asyncio.wait(
                [asyncio.create_task(session.unbind(), name=f"{self.name}.unbind") for session in bound],
                timeout=grace,
            )
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("%s: unbind failed: %s", self.name, task.exception())
        for session in list(self._connected):
            session.abort()
        await server.wait_closed()

    async def __aenter__(self) -> SMSCServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def _new_session(self) -> SMSCSession:
        session = SMSCSession(self)
        session.wiretap = self._wiretap
        self._connected.add(session)
        return session

    def _session_bound(self, session: SMSCSession) -> None:
        self._bound[session] = None

    def _session_closed(self, session: SMSCSession) -> None:
        self._connected.discard(session)
        self._bound.pop(session, None)
