"""Delivery receipts: a tolerant parser and the standard formatter (SMPP 3.4 Appendix B).

``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E Text:...``

Carriers vary the case, the order, the separators and the date length, add fields and drop fields.
The parser accepts all of that; it fails only when no message id can be found anywhere (or none that
a submit_sm_resp could have given). Some give the id in hex where submit_sm_resp gave it in decimal
(or the other way round): which one is the carrier's ``receipt_message_id`` quirk
(``routing.quirks.receipt_id_as_submitted``), never a guess.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime

from smpp._fastinit import fast_init
from smpp.constants import ESM_MESSAGE_TYPE_MASK, MAX_MESSAGE_ID, CommandStatus, ESMClass, MessageState
from smpp.errors import RemoteProtocolError
from smpp.tlv import EMPTY_TLVS, Tag, TLVs

__all__ = [
    "FINAL_STATES",
    "Receipt",
    "ReceiptParseError",
    "format_receipt",
    "is_acknowledgement",
    "is_delivery_report",
    "normalise_message_id",
    "parse_receipt",
    "stat_name",
]


class ReceiptParseError(RemoteProtocolError):
    """A receipt without any message id: it cannot be matched to an MT."""

    def __init__(self, message: str) -> None:
        # A permanent application error: redelivering the same text will not help.
        super().__init__(message, status=CommandStatus.ESME_RX_P_APPN)


FINAL_STATES = frozenset(
    {
        MessageState.DELIVERED,
        MessageState.EXPIRED,
        MessageState.DELETED,
        MessageState.UNDELIVERABLE,
        MessageState.REJECTED,
    }
)

#: The seven-letter stat of each state, as Appendix B spells it.
_STAT_NAMES = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}
#: stat values seen in the wild -> state: the standard names, full words, and state numbers.
_STATES_BY_STAT: dict[str, MessageState] = {
    **{name: state for state, name in _STAT_NAMES.items()},
    **{state.name: state for state in MessageState},
    **{str(int(state)): state for state in MessageState},
    "DELIVERD": MessageState.DELIVERED,
    "UNDELIVERED": MessageState.UNDELIVERABLE,
    "UNDELIVRD": MessageState.UNDELIVERABLE,
    "FAILED": MessageState.UNDELIVERABLE,
    "REJECTED": MessageState.REJECTED,
    "ACCEPTED": MessageState.ACCEPTED,
}

# A field name starts a word: letters (maybe "submit date" with a space), then a colon.
_FIELD = re.compile(r"(?<![^\s,;])([a-z][a-z0-9_-]*(?:[ _-]date)?)\s*:", re.ASCII | re.IGNORECASE)
# The Appendix B layout exactly (any case), as almost every SMSC writes it: read in one match. Values
# hold no separator or colon, so the tolerant scan would read the same fields; anything else goes to it.
_VALUE = r"([^\s,;:\x00]*)"
_STANDARD = re.compile(
    rf"id:{_VALUE} sub:{_VALUE} dlvrd:{_VALUE} submit date:{_VALUE} done date:{_VALUE} stat:{_VALUE}"
    rf" err:{_VALUE}(?: text:(.*))?\Z",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_STANDARD_NAMES = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err")
_NAME_NOISE = str.maketrans("", "", " _-")
_FIELD_ALIASES = {
    "id": "id",
    "msgid": "id",
    "messageid": "id",
    "sub": "sub",
    "dlvrd": "dlvrd",
    "dlvd": "dlvrd",
    "submitdate": "submit_date",
    "donedate": "done_date",
    "stat": "stat",
    "status": "stat",
    "state": "stat",
    "err": "err",
    "error": "err",
    "text": "text",
}
_SEPARATORS = " \t\r\n,;\x00"
#: message_state TLV value -> state (a dict look-up instead of an enum call per receipt).
_STATES_BY_VALUE: dict[int, MessageState] = {int(state): state for state in MessageState}
#: Fields of a receipt in the order ``_fields`` returns them.
_FIELD_NAMES = (*_STANDARD_NAMES, "text")


def stat_name(state: MessageState) -> str:
    """The Appendix B stat of ``state``: ``DELIVRD``, ``UNDELIV``..."""
    return _STAT_NAMES[state]


@fast_init
@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str
    state: MessageState
    #: The stat as the receipt gave it (or the standard name when only the message_state TLV said).
    stat: str
    err: str | None
    submit_date: datetime | None
    done_date: datetime | None
    sub: int | None
    dlvrd: int | None
    text: str

    @property
    def is_final(self) -> bool:
        """True in an end state: delivered, expired, deleted, undeliverable or rejected."""
        return self.state in FINAL_STATES


#: Message type 0110: a conversation abort (Korean CDMA), in esm_class bits 5-2.
_CONVERSATION_ABORT = 0x18
#: Message types (esm_class bits 5-2, SMPP 3.4 §5.2.12) that report on an MT: the SMSC's delivery
#: receipt and its intermediate delivery notification.
_REPORTS = frozenset({ESMClass.DELIVERY_RECEIPT, ESMClass.INTERMEDIATE_NOTIFICATION})
#: Message types that are about another message, never a message of the subscriber's own: the SME's
#: delivery and manual acknowledgements, and the conversation abort.
_ACKNOWLEDGEMENTS = frozenset({ESMClass.DELIVERY_ACK, ESMClass.USER_ACK, _CONVERSATION_ABORT})


def is_delivery_report(esm_class: int) -> bool:
    """True when a deliver_sm or data_sm reports on an MT: a delivery receipt or an intermediate
    notification (its text and TLVs read as a receipt's)."""
    return esm_class & ESM_MESSAGE_TYPE_MASK in _REPORTS


def is_acknowledgement(esm_class: int) -> bool:
    """True when a deliver_sm or data_sm is an SME acknowledgement or a conversation abort: nothing a
    subscriber wrote, and nothing we asked for."""
    return esm_class & ESM_MESSAGE_TYPE_MASK in _ACKNOWLEDGEMENTS


def parse_receipt(text: str | bytes, tlvs: TLVs | None = None) -> Receipt:
    """Read a receipt's short_message (and the PDU's TLVs, whose receipted_message_id and message_state
    win over the text). Fields may come in any order and case, with extra fields; ``text:`` runs to
    the end. Unreadable fields become ``None``; raises ``ReceiptParseError`` only without any id."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text_id, sub, dlvrd, submit_date, done_date, stat, err, body = _fields(text)
    if tlvs is None:
        tlvs = EMPTY_TLVS

    message_id = (tlvs.get_str(Tag.RECEIPTED_MESSAGE_ID) or "").strip("\x00 ") or text_id
    if not message_id:
        raise ReceiptParseError(f"no message id in receipt {text[:80]!r}")
    if len(message_id) > MAX_MESSAGE_ID or not message_id.isprintable():
        # no submit_sm_resp can have given it: a message_id is a C-Octet String of up to 65 octets
        raise ReceiptParseError(f"not a message id: {message_id[:80]!r}")

    state = _STATES_BY_STAT.get(stat.upper(), MessageState.UNKNOWN)
    tlv_state = tlvs.get_int(Tag.MESSAGE_STATE)
    if tlv_state is not None and tlv_state in _STATES_BY_VALUE:
        state = _STATES_BY_VALUE[tlv_state]
        stat = stat or _STAT_NAMES[state]

    return Receipt(
        message_id=message_id,
        state=state,
        stat=stat,
        err=err or None,
        submit_date=parse_receipt_date(submit_date),
        done_date=parse_receipt_date(done_date),
        sub=_int_or_none(sub),
        dlvrd=_int_or_none(dlvrd),
        text=body,
    )


def _fields(text: str) -> tuple[str, str, str, str, str, str, str, str]:
    """(id, sub, dlvrd, submit_date, done_date, stat, err, text), '' for a field that is absent; the
    first occurrence wins. ``text`` takes the rest of the string."""
    standard = _STANDARD.match(text)
    if standard is not None:
        text_id, sub, dlvrd, submit_date, done_date, stat, err, rest = standard.groups()
        body = rest.lstrip(" ").rstrip("\x00") if rest is not None else ""
        return text_id, sub, dlvrd, submit_date, done_date, stat, err, body
    fields = _scan_fields(text)
    return tuple(fields.get(name, "") for name in _FIELD_NAMES)  # type: ignore[return-value]


def _scan_fields(text: str) -> dict[str, str]:
    """The tolerant reading: any order, case, separators and extra fields. A value runs to the next
    field name (separators stripped)."""
    fields: dict[str, str] = {}
    name: str | None = None
    value_start = 0
    for match in _FIELD.finditer(text):
        if name is not None and name not in fields:
            fields[name] = text[value_start : match.start()].strip(_SEPARATORS)
        name = _FIELD_ALIASES.get(match.group(1).translate(_NAME_NOISE).lower())
        if name == "text":
            fields.setdefault("text", text[match.end() :].lstrip(" ").rstrip("\x00"))
            return fields
        value_start = match.end()
    if name is not None and name not in fields:
        fields[name] = text[value_start:].strip(_SEPARATORS)
    return fields


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isdecimal() and value.isascii() else None


#: Dates already read: receipts arriving together carry the same few minutes. Bounded; emptied when full.
_DATE_CACHE: dict[str, datetime | None] = {}
_DATE_CACHE_SIZE = 1024
_NOT_CACHED = object()


def parse_receipt_date(value: str) -> datetime | None:
    """``YYMMDDhhmm``, ``YYMMDDhhmmss`` or ``YYYYMMDDhhmmss`` (separators ignored) as a naive datetime;
    ``None`` when absent or not a real date. Two-digit years are 20YY: a receipt is never from the 1900s."""
    cached = _DATE_CACHE.get(value, _NOT_CACHED)
    if cached is not _NOT_CACHED:
        return cached  # type: ignore[return-value]
    if len(_DATE_CACHE) >= _DATE_CACHE_SIZE:
        _DATE_CACHE.clear()
    date = _DATE_CACHE[value] = _read_receipt_date(value)
    return date


def _read_receipt_date(value: str) -> datetime | None:
    digits = value if value.isascii() and value.isdigit() else "".join(c for c in value if c in string.digits)
    if len(digits) in (10, 12):
        digits = "20" + digits
    if len(digits) == 12:
        digits += "00"
    if len(digits) != 14:
        return None
    try:
        return datetime(
            int(digits[:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
        )
    except ValueError:
        return None


def format_receipt(
    message_id: str,
    state: MessageState,
    submit_date: datetime,
    done_date: datetime,
    *,
    err: str = "000",
    text: str = "",
    sub: int = 1,
    dlvrd: int | None = None,
    twelve_digit_dates: bool = False,
) -> str:
    """A receipt in the Appendix B layout. ``dlvrd`` defaults to ``sub`` when delivered, else 0; ``text``
    is conventionally the first 20 characters of the message."""
    if dlvrd is None:
        dlvrd = sub if state == MessageState.DELIVERED else 0
    date_format = "%y%m%d%H%M%S" if twelve_digit_dates else "%y%m%d%H%M"
    return (
        f"id:{message_id} sub:{sub:03d} dlvrd:{dlvrd:03d} submit date:{submit_date.strftime(date_format)}"
        f" done date:{done_date.strftime(date_format)} stat:{_STAT_NAMES[state]} err:{err} Text:{text}"
    )


# --- message ids in hex and decimal ------------------------------------------------------------------------

_HEX_DIGITS = frozenset(string.hexdigits)


def normalise_message_id(message_id: str) -> str:
    """A comparison key: spaces and NULs stripped; an all-hex-digit id lowercased without leading zeros.
    Other ids (UUIDs, alphanumerics) are kept as given, case included."""
    stripped = message_id.strip(" \t\r\n\x00")
    if stripped.isdigit() and stripped.isascii():  # the usual decimal id: no set built
        return stripped.lstrip("0") or "0"
    if stripped and set(stripped) <= _HEX_DIGITS:
        return stripped.lower().lstrip("0") or "0"
    return stripped
