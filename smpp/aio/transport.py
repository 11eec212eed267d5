"""The asyncio plumbing shared by ESME and SMSC sessions: an ``asyncio.Protocol`` that feeds bytes
to a sans-IO ``Connection``, dispatches its events, and writes bytes out.

Hot-path rules: no task and no coroutine per PDU, a future only where a caller awaits, all the
writes of one event-loop turn joined into one ``transport.write`` (flushed by ``call_soon``).
Response timeouts use one timer per session, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, cast

from smpp._state import BOUND_STATES
from smpp.codec import decode
from smpp.connection import (
    NEED_DATA,
    Connection,
    NeedData,
    ProtocolErrorEvent,
    RequestReceived,
    ResponseReceived,
    Role,
    SessionState,
    UnexpectedResponse,
)
from smpp.constants import status_name
from smpp.errors import ResponseTimeout, SessionClosed, SMPPError
from smpp.pdu import PDU, EnquireLink, EnquireLinkResp

#: What a request's completion callback receives: the response PDU, or why there is none.
Outcome = PDU | SMPPError
Callback = Callable[[Outcome], None]
#: Sees every PDU of a session as it crosses the wire: the session, ``"in"`` (read) or ``"out"``
#: (written), the PDU and its sequence number on the wire (an outgoing PDU object is numbered when
#: it is encoded, so its own ``sequence_number`` may still be 0).
WireTap = Callable[["SessionProtocol", Literal["in", "out"], PDU, int], None]
#: Protocol errors of one connection logged one by one; the rest are counted, and the count logged at
#: the end, so a peer sending garbage in a loop cannot flood the log.
PROTOCOL_ERRORS_LOGGED = 10


class Outstanding:
    """One request on the wire waiting for its response."""

    __slots__ = ("pdu", "callback", "future", "deadline", "order", "windowed", "flush")

    def __init__(
        self,
        pdu: PDU,
        callback: Callback | None,
        future: asyncio.Future[Any] | None,
        order: int = 0,
        windowed: bool = False,
    ) -> None:
        self.pdu = pdu
        self.callback = callback
        self.future = future
        self.deadline = 0.0
        self.order = order
        self.windowed = windowed
        #: the session's flush count when its bytes were buffered: they left with the next flush
        self.flush = 0

    def finish(self, outcome: Outcome) -> None:
        future = self.future
        if future is not None:
            if not future.done():
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        elif self.callback is not None:
            self.callback(outcome)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: an SMPP response is small and must leave now, not after the next ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SessionProtocol(asyncio.Protocol, metaclass=ABCMeta):
    """Base of ``ESMESession`` and ``SMSCSession``: one TCP connection, one SMPP session."""

    #: Stop reading the peer while what we write to it waits over the transport's high-water mark: a
    #: server's answer to a client that sends and never reads would pile up without limit. The SMSC
    #: side only: an ESME's writes are bounded by its windows, and it keeps reading its SMSC, for two
    #: peers that both stopped reading while blocked could wedge a bind with a big window for good.
    reads_only_while_writing: ClassVar[bool] = False

    def __init__(
        self, role: Role, name: str, *, enquire_link_interval: float | None, enquire_link_timeout: float
    ) -> None:
        self.name = name
        self.log = logging.getLogger(f"smpp.{role.value}")
        self.close_reason: str | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._role = role
        #: Set to see every PDU read and written (a trace); None costs one check per PDU.
        self.wiretap: WireTap | None = None
        self._enquire_link_interval = enquire_link_interval
        self._enquire_link_timeout = enquire_link_timeout
        self._reset()

    def _reset(self) -> None:
        """Fresh per-connection state, so a session object can be opened again after it closed."""
        self._loop = asyncio.get_running_loop()
        self._connection = Connection(self._role)
        self._transport: asyncio.Transport | None = None
        self._write_buffer: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        #: buffers handed to the transport so far: a request buffered before the last one has left
        self._flushes = 0
        self._pending: dict[int, Outstanding] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._enquire_link_waiting = False
        self._last_received = self._loop.time()
        self._paused = False
        self._protocol_errors = 0
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self.close_reason = None

    # --- public ---------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._connection.state

    @property
    def bound(self) -> bool:
        return self._transport is not None and self._connection.state in BOUND_STATES

    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def wait_closed(self) -> None:
        """Returns when the connection has ended; ``close_reason`` then says why."""
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        """Drop the TCP connection now, without unbinding."""
        if self.close_reason is None:
            self.close_reason = "aborted"
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though not necessarily an asyncio.Transport subclass: uvloop's TCP
        # transport implements the interface without the base class
        self._transport = cast(asyncio.Transport, transport)
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        self._last_received = self._loop.time()

    def data_received(self, data: bytes) -> None:
        connection = self._connection
        connection.receive_data(data)
        self._last_received = self._loop.time()
        wiretap = self.wiretap
        while True:
            event = connection.next_event()
            kind = type(event)
            if wiretap is not None and kind is not NeedData:
                tapped = getattr(event, "pdu", None)  # None: bytes that were no PDU, or the end
                if tapped is not None:
                    wiretap(self, "in", tapped, tapped.sequence_number)
            if kind is ResponseReceived:
                self._response_received(event.pdu, event.request_command_id)  # type: ignore[union-attr,arg-type]
            elif kind is RequestReceived:
                self._request_received(event.pdu)  # type: ignore[union-attr,arg-type]
            elif event is NEED_DATA:
                break
            elif kind is ProtocolErrorEvent:
                assert isinstance(event, ProtocolErrorEvent)
                self._protocol_error(event)
                if event.fatal:
                    self._send_automatic_answers()
                    self.drop(f"framing lost: {event.error}")
                    return
            elif kind is UnexpectedResponse:
                assert isinstance(event, UnexpectedResponse)
                pdu = event.pdu
                self.log.warning(
                    "%s: dropped %s with sequence_number %d: no request of ours waits for it",
                    self.name,
                    type(pdu).__name__,
                    pdu.sequence_number,
                )
            else:  # ConnectionClosed
                self.drop("session ended")
                break
        self._send_automatic_answers()
        self._after_events()

    def eof_received(self) -> bool | None:
        if self.close_reason is None:
            self.close_reason = "closed by the peer"
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.close_reason is None:
            self.close_reason = f"connection lost: {exc}" if exc is not None else "closed by the peer"
        self._connection.close()
        for handle in (self._flush_handle, self._sweep_handle, self._keepalive_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._sweep_handle = self._keepalive_handle = None
        self._write_buffer.clear()
        pending = list(self._pending.values())
        self._pending.clear()
        error = SessionClosed(f"{self.name}: {self.close_reason}")
        unsent = SessionClosed(f"{self.name}: {self.close_reason}", sent=False)
        flushes = self._flushes
        for request in pending:  # a request still in the write buffer never left: the peer never saw it
            self._request_failed(request, error if request.flush < flushes else unsent)
        self._session_ended(unsent)
        unlogged = self._protocol_errors - PROTOCOL_ERRORS_LOGGED
        if unlogged > 0:
            self.log.warning(
                "%s: %d more protocol errors from %s:%d were not logged", self.name, unlogged, *self.peer
            )
        self.log.info("%s: connection to %s:%d closed: %s", self.name, *self.peer, self.close_reason)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True
        if self.reads_only_while_writing and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        transport = self._transport
        if self.reads_only_while_writing and transport is not None and not transport.is_closing():
            transport.resume_reading()
        self._after_events()

    # --- hooks for the roles ----------------------------------------------------------------------

    @abstractmethod
    def _request_received(self, pdu: PDU) -> None:
        """The peer sent a request that is legal in the current state."""

    def _response_received(self, pdu: PDU, request_command_id: int) -> None:
        request = self._pending.pop(pdu.sequence_number, None)
        if request is not None:
            self._request_done(request, pdu)

    def _request_done(self, request: Outstanding, outcome: Outcome) -> None:
        """A request got its response, timed out, or failed."""
        request.finish(outcome)

    def _request_failed(self, request: Outstanding, error: SMPPError) -> None:
        self._request_done(request, error)

    def _after_events(self) -> None:
        """Called after each batch of received bytes was handled and when writing may resume."""

    def _session_ended(self, error: SessionClosed) -> None:
        """The connection is gone: fail whatever still waits to be sent with ``error`` (not sent)."""

    def _protocol_error(self, event: ProtocolErrorEvent) -> None:
        error = event.error
        command_id = error.command_id
        self._protocol_errors += 1
        if self._protocol_errors <= PROTOCOL_ERRORS_LOGGED:
            self.log.warning(
                "%s: protocol error from %s:%d (command_id %s, sequence_number %s, answered %s): %s",
                self.name,
                *self.peer,
                f"0x{command_id:08X}" if command_id is not None else "?",
                error.sequence_number,
                status_name(error.status),
                error,
            )
        elif self._protocol_errors == PROTOCOL_ERRORS_LOGGED + 1:
            self.log.warning(
                "%s: further protocol errors from %s:%d are counted, not logged, until the connection ends",
                self.name,
                *self.peer,
            )
        if event.request_command_id is not None and error.sequence_number is not None:
            request = self._pending.pop(error.sequence_number, None)
            if request is not None:
                self._request_failed(request, error)

    # --- writing ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued during this loop turn leaves in one write."""
        self._write_buffer.append(data)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        buffer = self._write_buffer
        if not buffer:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))
            self._flushes += 1
        buffer.clear()

    def drop(self, reason: str) -> None:
        """Close the connection after what is already queued has been written."""
        if self.close_reason is None:
            self.close_reason = reason
        self._connection.close()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._flush()
            transport.close()

    def _send_automatic_answers(self) -> None:
        data = self._connection.data_to_send()
        if data:
            if self.wiretap is not None:
                self._tap_written(data)
            self.write(data)

    def _tap_written(self, data: bytes) -> None:
        """Show the wiretap the PDUs the connection encoded by itself (generic_nack, refusals)."""
        assert self.wiretap is not None
        while data:
            decoded = decode(data)
            if decoded is None:
                return
            pdu, used = decoded
            self.wiretap(self, "out", pdu, pdu.sequence_number)
            data = data[used:]

    def respond(self, request: PDU, response: PDU) -> None:
        """Send ``response`` to the peer's ``request`` (numbered after it when its own number is 0)."""
        if self._transport is None or self._connection.state is SessionState.CLOSED:
            self.log.debug("%s: %s not sent: the session is over", self.name, type(response).__name__)
            return
        sequence_number = response.sequence_number or request.sequence_number
        self.write(self._connection.send_response(response, sequence_number))
        if self.wiretap is not None:
            self.wiretap(self, "out", response, sequence_number)

    def send_request(self, request: Outstanding, timeout: float, now: float | None = None) -> int:
        """Put a request on the wire and wait ``timeout`` seconds at most for its answer."""
        if self._transport is None:
            raise SessionClosed(f"{self.name}: {self.close_reason or 'not connected'}", sent=False)
        sequence_number, data = self._connection.send_request(request.pdu)
        self.write(data)
        if self.wiretap is not None:
            self.wiretap(self, "out", request.pdu, sequence_number)
        request.flush = self._flushes
        if request.pdu.response_class is not None:
            deadline = (self._loop.time() if now is None else now) + timeout
            request.deadline = deadline
            self._pending[sequence_number] = request
            if self._sweep_handle is None or deadline < self._sweep_at:
                self._arm_sweep(deadline)
        return sequence_number

    # --- response timeouts: one timer for all requests ----------------------------------------------

    def _arm_sweep(self, when: float) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._sweep_at = when
        self._sweep_handle = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self._loop.time()
        pending = self._pending
        expired = [number for number, request in pending.items() if request.deadline <= now]
        for number in expired:
            request = pending.pop(number)
            self._connection.forget(number)
            self.log.warning(
                "%s: no response to %s (sequence_number %d) in time",
                self.name,
                type(request.pdu).__name__,
                number,
            )
            self._request_failed(
                request,
                ResponseTimeout(
                    f"{self.name}: no response to {type(request.pdu).__name__} sequence_number {number}"
                ),
            )
        if pending:
            self._arm_sweep(min(request.deadline for request in pending.values()))
        if expired:
            self._after_events()

    # --- enquire_link when idle ----------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self._enquire_link_interval
        if interval is not None and interval > 0 and self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_later(interval, self._keepalive)

    def _keepalive(self) -> None:
        interval = self._enquire_link_interval
        assert interval is not None
        now = self._loop.time()
        idle_until = self._last_received + interval
        if now >= idle_until and not self._enquire_link_waiting and self._connection.state in BOUND_STATES:
            self._enquire_link_waiting = True
            self.send_request(
                Outstanding(EnquireLink(), self._enquire_link_answered, None), self._enquire_link_timeout, now
            )
            idle_until = now + interval
        self._keepalive_handle = self._loop.call_at(idle_until, self._keepalive)

    def _enquire_link_answered(self, outcome: Outcome) -> None:
        self._enquire_link_waiting = False
        if isinstance(outcome, ResponseTimeout):
            self.log.warning(
                "%s: enquire_link not answered in %.1fs: dropping the connection",
                self.name,
                self._enquire_link_timeout,
            )
            self.drop("enquire_link timeout")

    def _answer_enquire_link(self, pdu: PDU) -> None:
        self.respond(pdu, EnquireLinkResp())
