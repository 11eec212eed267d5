"""What goes in and out of the MT outbox: the MTs to queue, the MTs claimed, each segment's submit
result, receipts, status changes; and the pure rules that read them (a receipt's meaning for its part,
an MT's status from its parts', the retry back-off).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gatewayd.store.enums import MTKind, MTStatus, PartStatus

#: The longest error text or status detail an MT row and its history keep.
ERROR_TEXT_LIMIT = 255


@dataclass(frozen=True, slots=True)
class NewMT:
    """An MT to queue. ``destination`` is the normalized MSISDN; ``subscriber_id`` is looked up by it
    when not given. ``not_before`` delays the first attempt; ``note``: the detail of its ``queued``
    history line (why it waits)."""

    kind: MTKind
    carrier: str
    source: str
    destination: str
    text: str
    priority: int = 0
    data_coding: int | None = None
    bind_name: str | None = None
    subscriber_id: int | None = None
    conversation_id: int | None = None
    operator_id: int | None = None
    in_reply_to_mo_id: int | None = None
    request_receipt: bool = True
    not_before: datetime | None = None
    note: str | None = None
    #: Minor units added to the client's spend on a billed service (None: not billed).
    charge: int | None = None


# ClaimedMT and PartResult are made per MT and per part on the hot path: plain slotted dataclasses,
# which build about five times faster than frozen ones; nothing changes them after construction.
@dataclass(slots=True)
class ClaimedMT:
    """An MT leased to this daemon for sending. ``done_parts`` are the part numbers already accepted by
    the SMSC on an earlier attempt (only the others are to be sent); empty on a first attempt."""

    id: int
    kind: MTKind
    carrier: str
    bind_name: str | None
    source: str
    destination: str
    text: str
    data_coding: int | None
    priority: int
    attempts: int
    request_receipt: bool
    segments: int
    done_parts: frozenset[int]


@dataclass(slots=True)
class PartResult:
    """The SMSC's answer to one segment's submit_sm. Accepted when ``smsc_message_id`` is set; else
    rejected with ``error_code`` (the command_status, or a local code for a timeout) and ``retryable``
    saying whether another attempt may succeed (throttling, queue full, timeout). ``sent`` False: the
    segment never left (its session closed first): there is no answer to record, and unless another
    segment was rejected its MT goes back to the outbox at once, the attempt not counted."""

    mt_id: int
    part_no: int
    segments: int
    carrier: str
    submitted_at: datetime
    responded_at: datetime
    smsc_message_id: str | None = None
    error_code: int | None = None
    error_text: str | None = None
    retryable: bool = False
    bind_name: str | None = None
    sent: bool = True

    @property
    def accepted(self) -> bool:
        return self.smsc_message_id is not None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``limit`` retries after the first attempt, waiting ``initial`` seconds doubled each time up to
    ``maximum``."""

    limit: int = 5
    initial: float = 5.0
    maximum: float = 300.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.maximum, self.initial * 2 ** max(0, attempts - 1)))

    def may_retry(self, attempts: int) -> bool:
        return attempts <= self.limit


@dataclass(frozen=True, slots=True)
class ReceiptIn:
    """A delivery receipt: ``state`` is the receipt's ``stat`` (DELIVRD, UNDELIV, EXPIRED, REJECTD,
    DELETED, ACCEPTD, ENROUTE, UNKNOWN) or the message_state name (DELIVERED, UNDELIVERABLE ...)."""

    carrier: str
    smsc_message_id: str
    state: str
    received_at: datetime
    error_code: int | None = None


@dataclass(slots=True)
class MTStatusChange:
    """An MT moved from ``previous`` to ``status``; publish it as ``<prefix>/mt/<mt_id>/status``."""

    mt_id: int
    previous: MTStatus
    status: MTStatus
    at: datetime
    detail: str | None = None

    def event_payload(self) -> dict[str, object]:
        return {
            "mt_id": self.mt_id,
            "status": self.status.value,
            "previous": self.previous.value,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    changes: list[MTStatusChange]
    matched: int
    early: int


# Receipt states (short ``stat`` text and long message_state names) -> what they mean for a part.
_RECEIPT_OUTCOMES: Mapping[str, PartStatus | None] = {
    "DELIVRD": PartStatus.DELIVERED,
    "DELIVERED": PartStatus.DELIVERED,
    "UNDELIV": PartStatus.UNDELIVERABLE,
    "UNDELIVERABLE": PartStatus.UNDELIVERABLE,
    "REJECTD": PartStatus.UNDELIVERABLE,
    "REJECTED": PartStatus.UNDELIVERABLE,
    "DELETED": PartStatus.UNDELIVERABLE,
    "EXPIRED": PartStatus.EXPIRED,
}


def receipt_part_status(state: str) -> PartStatus | None:
    """The final part status a receipt state means, or None for an intermediate one (ENROUTE ...)."""
    return _RECEIPT_OUTCOMES.get(state.strip().upper())


def _one_part_mt_status(state: PartStatus) -> MTStatus | None:
    if state is PartStatus.REJECTED:
        return None
    if state is PartStatus.UNDELIVERABLE:
        return MTStatus.FAILED
    if state is PartStatus.EXPIRED:
        return MTStatus.EXPIRED
    return MTStatus.DELIVERED if state is PartStatus.DELIVERED else MTStatus.ACCEPTED


def derive_mt_status(segments: int, parts: Iterable[PartStatus]) -> MTStatus | None:
    """The status an MT in ``sending``/``accepted`` takes from its parts' states; None while parts are
    missing. Any undeliverable part fails the message; else any expired part expires it.

    A part the SMSC rejected counts as missing: recording the results fails or retries the MT
    when it writes the rejection, so a rejected part seen here is one whose resend is still to come
    (a receipt for another part, a reconcile, during the retry)."""
    states = list(parts)
    if segments == 1 and len(states) == 1:  # most MTs: one part decides
        return _ONE_PART_MT_STATUS[states[0]]
    if PartStatus.UNDELIVERABLE in states:
        return MTStatus.FAILED
    if PartStatus.REJECTED in states:
        states = [state for state in states if state is not PartStatus.REJECTED]
    if segments <= 0 or len(states) < segments:
        return None
    if any(state is PartStatus.EXPIRED for state in states):
        return MTStatus.EXPIRED
    if all(state is PartStatus.DELIVERED for state in states):
        return MTStatus.DELIVERED
    return MTStatus.ACCEPTED


#: A one-part MT's status by its part's: the general rule of :func:`derive_mt_status`, looked up.
_ONE_PART_MT_STATUS: Mapping[PartStatus, MTStatus | None] = {
    state: _one_part_mt_status(state) for state in PartStatus
}


def state_text(state: str) -> str:
    """A receipt state as the store keeps it (``receipt_state``, early receipts)."""
    return state.strip().upper()[:16]


#: Enum members by stored value: a dict lookup per row instead of an ``Enum(value)`` call.
MT_STATUS_BY_VALUE: Mapping[str, MTStatus] = {status.value: status for status in MTStatus}
PART_STATUS_BY_VALUE: Mapping[str, PartStatus] = {status.value: status for status in PartStatus}
MT_KIND_BY_VALUE: Mapping[str, MTKind] = {kind.value: kind for kind in MTKind}
