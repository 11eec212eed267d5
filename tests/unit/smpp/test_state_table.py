"""The session state table: who may send what, and what each PDU does to the state."""

from __future__ import annotations

import pytest

from smpp._state import (
    BOUND_STATES,
    MAY_SEND,
    ON_FAILURE,
    ON_REQUEST,
    ON_SUCCESS,
    Role,
    SessionState,
    may_send,
    refusal_status,
)
from smpp.constants import CommandID, CommandStatus


def test_table_covers_every_role_and_state() -> None:
    assert set(MAY_SEND) == {(role, state) for role in Role for state in SessionState}


def test_table_holds_requests_only() -> None:
    for allowed in MAY_SEND.values():
        assert all(not command_id & 0x80000000 for command_id in allowed)


def test_peer_of_each_role() -> None:
    assert Role.ESME.peer is Role.SMSC
    assert Role.SMSC.peer is Role.ESME


@pytest.mark.parametrize(
    ("state", "submit_allowed"),
    [
        (SessionState.OPEN, False),
        (SessionState.BINDING, False),
        (SessionState.BOUND_TX, True),
        (SessionState.BOUND_RX, False),
        (SessionState.BOUND_TRX, True),
        (SessionState.UNBINDING, False),
        (SessionState.CLOSED, False),
    ],
)
def test_esme_may_submit_only_when_bound_to_transmit(state: SessionState, submit_allowed: bool) -> None:
    assert (CommandID.SUBMIT_SM in may_send(Role.ESME, state)) is submit_allowed


@pytest.mark.parametrize(
    ("state", "deliver_allowed"),
    [
        (SessionState.OPEN, False),
        (SessionState.BOUND_TX, False),
        (SessionState.BOUND_RX, True),
        (SessionState.BOUND_TRX, True),
        (SessionState.UNBINDING, False),
    ],
)
def test_smsc_may_deliver_only_to_a_receiver(state: SessionState, deliver_allowed: bool) -> None:
    assert (CommandID.DELIVER_SM in may_send(Role.SMSC, state)) is deliver_allowed


def test_smsc_never_submits_and_esme_never_delivers() -> None:
    for state in SessionState:
        assert CommandID.SUBMIT_SM not in may_send(Role.SMSC, state)
        assert CommandID.DELIVER_SM not in may_send(Role.ESME, state)


def test_bind_is_only_for_the_esme_when_not_bound() -> None:
    assert CommandID.BIND_TRANSCEIVER in may_send(Role.ESME, SessionState.OPEN)
    for state in BOUND_STATES:
        assert CommandID.BIND_TRANSCEIVER not in may_send(Role.ESME, state)
    assert CommandID.BIND_TRANSMITTER not in may_send(Role.ESME, SessionState.OUTBOUND)
    assert CommandID.OUTBIND in may_send(Role.SMSC, SessionState.OPEN)


def test_transitions() -> None:
    assert ON_REQUEST[CommandID.BIND_RECEIVER] is SessionState.BINDING
    assert ON_REQUEST[CommandID.UNBIND] is SessionState.UNBINDING
    assert ON_SUCCESS[CommandID.BIND_RECEIVER] is SessionState.BOUND_RX
    assert ON_SUCCESS[CommandID.BIND_TRANSMITTER] is SessionState.BOUND_TX
    assert ON_SUCCESS[CommandID.BIND_TRANSCEIVER] is SessionState.BOUND_TRX
    assert ON_FAILURE[CommandID.BIND_TRANSCEIVER] is SessionState.OPEN
    assert ON_SUCCESS[CommandID.UNBIND] is ON_FAILURE[CommandID.UNBIND] is SessionState.CLOSED


def test_refusal_status() -> None:
    assert refusal_status(CommandID.BIND_TRANSCEIVER, SessionState.BOUND_TRX) == CommandStatus.ESME_RALYBND
    assert refusal_status(CommandID.BIND_TRANSMITTER, SessionState.BINDING) == CommandStatus.ESME_RALYBND
    assert refusal_status(CommandID.SUBMIT_SM, SessionState.BOUND_RX) == CommandStatus.ESME_RINVBNDSTS
    assert refusal_status(CommandID.BIND_TRANSMITTER, SessionState.UNBINDING) == CommandStatus.ESME_RINVBNDSTS
