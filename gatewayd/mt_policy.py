"""Pure MT rules: which submit outcomes are worth retrying, and the error codes kept for them."""

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
#: A command_status the store cannot keep: SMPP 3.4 §5.1.3 reserves 0x80000000 and up, and the error
#: code columns are 32-bit signed integers. The status itself stays in the MT's error text.
LOCAL_RESERVED_STATUS = 0x10000005

#: The largest error code the store keeps (its columns are PostgreSQL ``integer``).
MAX_ERROR_CODE = 0x7FFFFFFF


def is_temporary(command_status: int) -> bool:
    return command_status in TEMPORARY_STATUSES


def error_code_of(command_status: int) -> int:
    """The error code kept for a refused submit: its command_status, or :data:`LOCAL_RESERVED_STATUS`
    for one past what the store holds (a non-conforming SMSC must not stop the MTs being recorded)."""
    return command_status if 0 <= command_status <= MAX_ERROR_CODE else LOCAL_RESERVED_STATUS


def receipt_error_code(err: str | None) -> int | None:
    """The receipt's ``err:`` field as a number when it is one (decimal, or hex when it has letters)
    that the store can keep; None otherwise (Appendix B gives it three digits)."""
    if not err:
        return None
    value = err.strip()
    for base in (10, 16):
        try:
            code = int(value, base)
        except ValueError:
            continue
        return code if 0 <= code <= MAX_ERROR_CODE else None
    return None
