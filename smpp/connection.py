"""Sans-IO SMPP 3.4 session endpoint, one object for the ESME role and the SMSC role.

Feed it the bytes the socket read (``receive_data``), pull what they meant (``next_event``), and
turn PDUs into bytes to write (``send`` / ``send_request``). It never touches a socket, a clock or
an event loop. It numbers requests, matches responses to them, enforces the state table of
``smpp._state`` and answers by itself what the peer got wrong: those answers wait in
``data_to_send()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from smpp._fastinit import fast_init
from smpp._state import MAY_SEND, ON_FAILURE, ON_REQUEST, ON_SUCCESS, Role, SessionState, refusal_status
from smpp.codec import Framer, encode
from smpp.constants import MAX_SEQUENCE_NUMBER, RESPONSE_BIT, CommandID
from smpp.errors import LocalProtocolError, RemoteProtocolError
from smpp.pdu import PDU, PDU_CLASSES, GenericNack

__all__ = [
    "NEED_DATA",
    "Connection",
    "ConnectionClosed",
    "Event",
    "NeedData",
    "ProtocolErrorEvent",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "SessionState",
    "UnexpectedResponse",
]

_GENERIC_NACK: Final = int(CommandID.GENERIC_NACK)


class NeedData:
    """``next_event()`` has nothing more until ``receive_data()`` is called again."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@fast_init
@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer sent a request that is legal in the current state; the application answers it."""

    pdu: PDU


@fast_init
@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The peer answered one of our requests (a generic_nack counts as an answer)."""

    pdu: PDU
    request_command_id: int


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent:
    """The peer sent something unparsable or illegal. Already answered when SMPP allows an answer.

    ``fatal`` means the byte stream cannot be framed any more: ``ConnectionClosed`` follows.
    ``request_command_id`` is set when a malformed response answered one of our requests, which is
    then no longer outstanding (the application should fail it with ``error``). ``pdu`` is the request
    when it was well formed but not allowed in the current state.
    """

    error: RemoteProtocolError
    fatal: bool = False
    request_command_id: int | None = None
    pdu: PDU | None = None


@dataclass(frozen=True, slots=True)
class UnexpectedResponse:
    """A response to a sequence number we have no request for (never sent, or already timed out)."""

    pdu: PDU


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection, the session ended, or framing was lost."""


Event = RequestReceived | ResponseReceived | ProtocolErrorEvent | UnexpectedResponse | ConnectionClosed


class Connection:
    """One end of an SMPP session; ``role`` says which end."""

    __slots__ = (
        "role",
        "_state",
        "_framer",
        "_outbox",
        "_outstanding",
        "_unanswered",
        "_reused",
        "_next_sequence",
        "_we_may_send",
        "_peer_may_send",
        "_eof",
    )

    def __init__(self, role: Role, *, first_sequence_number: int = 1) -> None:
        if not 1 <= first_sequence_number <= MAX_SEQUENCE_NUMBER:
            raise ValueError(f"first_sequence_number must be in 1..{MAX_SEQUENCE_NUMBER}")
        self.role = role
        self._framer = Framer()
        self._outbox: list[bytes] = []
        #: Our requests waiting for a response: sequence_number -> request command_id.
        self._outstanding: dict[int, int] = {}
        #: The peer's requests waiting for our response: sequence_number -> request command_id.
        self._unanswered: dict[int, int] = {}
        #: More of the peer's unanswered requests under a sequence_number already in ``_unanswered``
        #: (a peer that reuses one before we answered): each still gets its answer.
        self._reused: dict[int, list[int]] = {}
        self._next_sequence = first_sequence_number
        self._eof = False
        self._state = SessionState.OPEN
        self._we_may_send = MAY_SEND[(role, SessionState.OPEN)]
        self._peer_may_send = MAY_SEND[(role.peer, SessionState.OPEN)]

    # --- state --------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def outstanding(self) -> int:
        """How many of our requests wait for a response."""
        return len(self._outstanding)

    @property
    def unanswered(self) -> int:
        """How many of the peer's requests wait for our response."""
        return len(self._unanswered) + sum(len(reused) for reused in self._reused.values())

    def is_outstanding(self, sequence_number: int) -> bool:
        return sequence_number in self._outstanding

    def forget(self, sequence_number: int) -> bool:
        """Stop waiting for the response to one request (it timed out): a late answer will come out
        as ``UnexpectedResponse``. Returns whether the request was outstanding."""
        return self._outstanding.pop(sequence_number, None) is not None

    def close(self) -> None:
        """The connection is gone or being dropped by us: nothing may be sent any more."""
        self._set_state(SessionState.CLOSED)

    def _set_state(self, state: SessionState) -> None:
        self._state = state
        self._we_may_send = MAY_SEND[(self.role, state)]
        self._peer_may_send = MAY_SEND[(self.role.peer, state)]

    # --- inbound ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the socket; ``b""`` means the peer closed its side (EOF)."""
        if not data:
            self._eof = True
        elif not self._eof:
            self._framer.feed(data)

    def next_event(self) -> Event | NeedData:
        """The next thing the peer did, or ``NEED_DATA``. After ``ConnectionClosed``, always that."""
        if self._state is SessionState.CLOSED and (self._eof or self._framer.broken):
            return ConnectionClosed()
        try:
            pdu = self._framer.next_pdu()
        except RemoteProtocolError as error:
            return self._bad_pdu(error)
        if pdu is None:
            if self._eof:
                self._set_state(SessionState.CLOSED)
                return ConnectionClosed()
            return NEED_DATA
        if pdu.command_id & RESPONSE_BIT:
            return self._response_received(pdu)
        return self._request_received(pdu)

    def _bad_pdu(self, error: RemoteProtocolError) -> ProtocolErrorEvent:
        sequence_number = error.sequence_number or 0
        if self._framer.broken:
            # The length field cannot be trusted: nothing after this point can be framed.
            self._nack(sequence_number, error.status)
            self._set_state(SessionState.CLOSED)
            return ProtocolErrorEvent(error, fatal=True)
        command_id = error.command_id
        if command_id is not None and command_id & RESPONSE_BIT and command_id in PDU_CLASSES:
            # A malformed answer is never answered; it still settles the request it belongs to.
            request_command_id = self._outstanding.pop(sequence_number, None)
            return ProtocolErrorEvent(error, request_command_id=request_command_id)
        self._nack(sequence_number, error.status)
        return ProtocolErrorEvent(error)

    def _nack(self, sequence_number: int, status: int) -> None:
        self._outbox.append(encode(GenericNack(sequence_number=sequence_number, command_status=status)))

    def _response_received(self, pdu: PDU) -> Event:
        sequence_number = pdu.sequence_number
        request_command_id = self._outstanding.pop(sequence_number, None)
        if request_command_id is None:
            return UnexpectedResponse(pdu)
        command_id = pdu.command_id
        if command_id != request_command_id | RESPONSE_BIT and command_id != _GENERIC_NACK:
            self._outstanding[sequence_number] = request_command_id  # the real answer may still come
            return UnexpectedResponse(pdu)
        if request_command_id in ON_SUCCESS:
            self._settle(request_command_id, pdu.command_status)
        return ResponseReceived(pdu, request_command_id)

    def _request_received(self, pdu: PDU) -> Event:
        command_id = pdu.command_id
        sequence_number = pdu.sequence_number
        if command_id not in self._peer_may_send:
            status = refusal_status(command_id, self._state)
            answer_class = pdu.response_class or GenericNack
            self._outbox.append(encode(answer_class(sequence_number=sequence_number, command_status=status)))
            error = RemoteProtocolError(
                f"{type(pdu).__name__} not allowed from the {self.role.peer.value} "
                f"in state {self._state.value}",
                status=status,
                sequence_number=sequence_number,
                command_id=command_id,
            )
            return ProtocolErrorEvent(error, pdu=pdu)
        if pdu.response_class is not None:
            if sequence_number in self._unanswered:
                self._reused.setdefault(sequence_number, []).append(command_id)
            else:
                self._unanswered[sequence_number] = command_id
        new_state = ON_REQUEST.get(command_id)
        if new_state is not None:
            self._set_state(new_state)
        return RequestReceived(pdu)

    def _take_reused(self, sequence_number: int, command_id: int) -> int | None:
        """The request a response answers among several the peer sent under one sequence_number (the
        first of its kind, or the first of all for a generic_nack); it is no longer unanswered."""
        requests = [self._unanswered[sequence_number], *self._reused[sequence_number]]
        for index, request in enumerate(requests):
            if command_id == _GENERIC_NACK or request | RESPONSE_BIT == command_id:
                del requests[index]
                break
        else:
            raise LocalProtocolError(
                f"response with sequence_number {sequence_number} answers no request of the peer",
                sequence_number=sequence_number,
                command_id=command_id,
            )
        self._unanswered[sequence_number] = requests[0]
        if len(requests) > 1:
            self._reused[sequence_number] = requests[1:]
        else:
            del self._reused[sequence_number]
        return request

    def _settle(self, request_command_id: int, status: int) -> None:
        self._set_state(ON_SUCCESS[request_command_id] if status == 0 else ON_FAILURE[request_command_id])

    # --- outbound -----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Answers the connection produced by itself (generic_nack, refusals); empty when none."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def send(self, pdu: PDU) -> bytes:
        """The bytes for ``pdu``. A request gets the next sequence number; a response must carry the
        sequence number of the peer's request it answers. Raises ``LocalProtocolError`` when the PDU
        is not allowed now."""
        if pdu.command_id & RESPONSE_BIT:
            return self.send_response(pdu)
        return self.send_request(pdu)[1]

    def send_request(self, pdu: PDU) -> tuple[int, bytes]:
        """Number ``pdu`` with the next sequence number and encode it: ``(sequence_number, bytes)``."""
        command_id = pdu.command_id
        if command_id not in self._we_may_send:
            if command_id & RESPONSE_BIT:
                raise LocalProtocolError(f"{type(pdu).__name__} is a response, not a request")
            raise LocalProtocolError(
                f"{type(pdu).__name__} not allowed from the {self.role.value} in state {self._state.value}",
                status=refusal_status(command_id, self._state),
                command_id=command_id,
            )
        sequence_number = self._take_sequence_number()
        data = encode(pdu, sequence_number)
        if pdu.response_class is not None:
            self._outstanding[sequence_number] = command_id
        new_state = ON_REQUEST.get(command_id)
        if new_state is not None:
            self._set_state(new_state)
        return sequence_number, data

    def _take_sequence_number(self) -> int:
        sequence_number = self._next_sequence
        # After a wrap, skip numbers whose request is still waiting (only a very slow peer does that).
        while sequence_number in self._outstanding:
            sequence_number = sequence_number + 1 if sequence_number < MAX_SEQUENCE_NUMBER else 1
        self._next_sequence = sequence_number + 1 if sequence_number < MAX_SEQUENCE_NUMBER else 1
        return sequence_number

    def send_response(self, pdu: PDU, sequence_number: int | None = None) -> bytes:
        """The bytes for the response ``pdu``, numbered ``sequence_number`` when given (saves building a
        copy of a response created with sequence_number 0)."""
        if self._state is SessionState.CLOSED:
            raise LocalProtocolError(f"{type(pdu).__name__} cannot be sent: the session is closed")
        if sequence_number is None:
            sequence_number = pdu.sequence_number
        command_id = pdu.command_id
        request_command_id = self._unanswered.get(sequence_number)
        if sequence_number in self._reused:
            request_command_id = self._take_reused(sequence_number, command_id)
        elif command_id == _GENERIC_NACK:
            # A generic_nack may also refuse something the peer sent that we never recorded.
            self._unanswered.pop(sequence_number, None)
        elif request_command_id is None or request_command_id | RESPONSE_BIT != command_id:
            raise LocalProtocolError(
                f"{type(pdu).__name__} with sequence_number {sequence_number} answers no request of the peer",
                sequence_number=sequence_number,
                command_id=command_id,
            )
        else:
            del self._unanswered[sequence_number]
        data = encode(pdu, sequence_number)
        if request_command_id is not None and request_command_id in ON_SUCCESS:
            self._settle(request_command_id, pdu.command_status)
        return data
