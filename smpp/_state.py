"""The one table of SMPP 3.4 session states: which requests each role may send in each state, and
the transitions that PDUs cause.

Both endpoints of a session share the same state: an ESME and its SMSC move from OPEN to BOUND_TRX
when the bind_transceiver_resp carrying status 0 crosses the wire, whichever side looks at it.
Responses are not listed: a response is legal whenever it answers an outstanding request.
"""

from __future__ import annotations

from enum import Enum

from smpp.constants import CommandID, CommandStatus


class Role(Enum):
    ESME = "esme"
    SMSC = "smsc"

    @property
    def peer(self) -> Role:
        return Role.SMSC if self is Role.ESME else Role.ESME


class SessionState(Enum):
    OPEN = "open"  # connected, not bound
    OUTBOUND = "outbound"  # the SMSC sent outbind; the ESME is expected to bind
    BINDING = "binding"  # a bind request is waiting for its response
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # unbind sent or received, unbind_resp not yet
    CLOSED = "closed"


BOUND_STATES = frozenset({SessionState.BOUND_TX, SessionState.BOUND_RX, SessionState.BOUND_TRX})

_BINDS = frozenset({CommandID.BIND_TRANSMITTER, CommandID.BIND_RECEIVER, CommandID.BIND_TRANSCEIVER})
_ESME_SUBMITS = frozenset(
    {
        CommandID.SUBMIT_SM,
        CommandID.SUBMIT_MULTI,
        CommandID.DATA_SM,
        CommandID.QUERY_SM,
        CommandID.CANCEL_SM,
        CommandID.REPLACE_SM,
    }
)
_SMSC_DELIVERS = frozenset({CommandID.DELIVER_SM, CommandID.DATA_SM, CommandID.ALERT_NOTIFICATION})
_KEEPALIVE = frozenset({CommandID.ENQUIRE_LINK})
_SESSION_END = frozenset({CommandID.ENQUIRE_LINK, CommandID.UNBIND})

#: Rule 1: (sender role, state) -> the request command ids that sender may send in that state.
#: Anything else is answered with ESME_RINVBNDSTS (or ESME_RALYBND for a bind once bound).
MAY_SEND: dict[tuple[Role, SessionState], frozenset[int]] = {
    (Role.ESME, SessionState.OPEN): _BINDS | _KEEPALIVE,
    (Role.ESME, SessionState.OUTBOUND): frozenset({CommandID.BIND_RECEIVER, CommandID.BIND_TRANSCEIVER})
    | _KEEPALIVE,
    (Role.ESME, SessionState.BINDING): _KEEPALIVE,
    (Role.ESME, SessionState.BOUND_TX): _ESME_SUBMITS | _SESSION_END,
    (Role.ESME, SessionState.BOUND_RX): _SESSION_END,
    (Role.ESME, SessionState.BOUND_TRX): _ESME_SUBMITS | _SESSION_END,
    # Crossing unbinds: both sides sent unbind at once; each answers the other.
    (Role.ESME, SessionState.UNBINDING): frozenset({CommandID.UNBIND}),
    (Role.ESME, SessionState.CLOSED): frozenset(),
    (Role.SMSC, SessionState.OPEN): frozenset({CommandID.OUTBIND}) | _KEEPALIVE,
    (Role.SMSC, SessionState.OUTBOUND): _KEEPALIVE,
    (Role.SMSC, SessionState.BINDING): _KEEPALIVE,
    (Role.SMSC, SessionState.BOUND_TX): _SESSION_END,
    (Role.SMSC, SessionState.BOUND_RX): _SMSC_DELIVERS | _SESSION_END,
    (Role.SMSC, SessionState.BOUND_TRX): _SMSC_DELIVERS | _SESSION_END,
    (Role.SMSC, SessionState.UNBINDING): frozenset({CommandID.UNBIND}),
    (Role.SMSC, SessionState.CLOSED): frozenset(),
}

#: A request sent by the SMSC or the ESME moves the session to this state (before its response).
ON_REQUEST: dict[int, SessionState] = {
    CommandID.BIND_TRANSMITTER: SessionState.BINDING,
    CommandID.BIND_RECEIVER: SessionState.BINDING,
    CommandID.BIND_TRANSCEIVER: SessionState.BINDING,
    CommandID.OUTBIND: SessionState.OUTBOUND,
    CommandID.UNBIND: SessionState.UNBINDING,
}

#: A response with command_status 0 to these requests moves the session to this state.
ON_SUCCESS: dict[int, SessionState] = {
    CommandID.BIND_TRANSMITTER: SessionState.BOUND_TX,
    CommandID.BIND_RECEIVER: SessionState.BOUND_RX,
    CommandID.BIND_TRANSCEIVER: SessionState.BOUND_TRX,
    CommandID.UNBIND: SessionState.CLOSED,
}

#: A negative response to these requests moves the session back to this state.
ON_FAILURE: dict[int, SessionState] = {
    CommandID.BIND_TRANSMITTER: SessionState.OPEN,
    CommandID.BIND_RECEIVER: SessionState.OPEN,
    CommandID.BIND_TRANSCEIVER: SessionState.OPEN,
    # An unbind refused still ends the session: nobody keeps talking after asking to stop.
    CommandID.UNBIND: SessionState.CLOSED,
}


def may_send(role: Role, state: SessionState) -> frozenset[int]:
    """The request command ids ``role`` may send while the session is in ``state``."""
    return MAY_SEND[(role, state)]


def refusal_status(command_id: int, state: SessionState) -> int:
    """The command_status that answers a request not allowed in ``state``."""
    if command_id in _BINDS and state in BOUND_STATES | {SessionState.BINDING}:
        return CommandStatus.ESME_RALYBND
    return CommandStatus.ESME_RINVBNDSTS
