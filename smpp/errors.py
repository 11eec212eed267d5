"""Errors of the SMPP package: one root, and whose fault it was.

``LocalProtocolError`` means *we* tried to break the protocol (a bug or misuse on our side);
``RemoteProtocolError`` means the peer sent something we cannot accept. Both carry the
command_status an SMPP answer should use, so a session can generic_nack or respond with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smpp.constants import CommandStatus

if TYPE_CHECKING:
    from smpp.pdu import PDU


class SMPPError(Exception):
    """Root of every error raised by the ``smpp`` package."""


class ProtocolError(SMPPError):
    """A PDU or a sequence of PDUs that breaks SMPP 3.4."""

    def __init__(
        self,
        message: str,
        *,
        status: int = CommandStatus.ESME_RSYSERR,
        sequence_number: int | None = None,
        command_id: int | None = None,
        consumed: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.sequence_number = sequence_number
        self.command_id = command_id
        #: Bytes of the offending PDU, so a reader can skip it and go on; None when framing is lost.
        self.consumed = consumed


class LocalProtocolError(ProtocolError):
    """We were about to send something illegal (wrong state, bad field). Our bug."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal or unparsable. Their fault; the session may go on."""


class NegativeResponseError(SMPPError):
    """A request was answered with a non-zero command_status. Carries the response PDU."""

    def __init__(self, response: PDU) -> None:
        status = response.command_status
        try:
            name = CommandStatus(status).name
        except ValueError:
            name = f"0x{status:08X}"
        super().__init__(f"{type(response).__name__} status {name}")
        self.response = response
        self.status = status


class ResponseTimeout(SMPPError):
    """No response arrived for a request within its timeout. Only that request fails."""


class SessionClosed(SMPPError):
    """The session is closed or the connection was lost; pending requests fail with this.

    ``sent`` says whether the request it answers may have reached the peer: False when it certainly
    did not (it waited for the window, the throttle or a backoff pause, or its bytes had not been
    handed to the transport yet), so sending it again cannot duplicate it; True when its bytes left.
    """

    def __init__(self, message: str = "", *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent
