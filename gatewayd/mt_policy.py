"""Pure MT rules: which submit outcomes are worth retrying, and reading a receipt's error code."""

from __future__ import annotations

from smpp.constants import CommandStatus

#: Errors an SMSC gives for a passing condition: the same submit may succeed later.
TEMPORARY_STATUSES = frozenset(
    {
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RSYSERR,
        CommandStatus.ESME_RSUBMITFAIL,
        CommandStatus.ESME_RUNKNOWNERR,
    }
)

#: Local error codes for outcomes that have no command_status (kept apart from SMPP's range).
LOCAL_TIMEOUT = 0x10000001
LOCAL_SESSION_LOST = 0x10000002
LOCAL_NO_ROUTE = 0x10000003
LOCAL_ENCODING = 0x10000004


def is_temporary(command_status: int) -> bool:
    return command_status in TEMPORARY_STATUSES


def receipt_error_code(err: str | None) -> int | None:
    """The receipt's ``err:`` field as a number when it is one (decimal, or hex when it has letters)."""
    if not err:
        return None
    value = err.strip()
    for base in (10, 16):
        try:
            return int(value, base)
        except ValueError:
            continue
    return None
