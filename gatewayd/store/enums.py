"""The states stored in the message tables, as string enums (stored as their lower-case values)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum


class ConversationStatus(StrEnum):
    WAITING = "waiting"  # the subscriber wrote and no operator answered yet
    OPEN = "open"  # an operator answered; the chat goes on
    CLOSED = "closed"


class MTStatus(StrEnum):
    """``queued -> sending -> accepted -> delivered | failed | expired``; ``refused`` (not sent: policy)
    and ``cancelled`` (withdrawn while queued) are final too."""

    QUEUED = "queued"
    SENDING = "sending"
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUSED = "refused"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_MT_STATUSES


_FINAL_MT_STATUSES = frozenset(
    {MTStatus.DELIVERED, MTStatus.FAILED, MTStatus.EXPIRED, MTStatus.REFUSED, MTStatus.CANCELLED}
)


class MTKind(StrEnum):
    REPLY = "reply"  # an operator's answer to an MO
    PUSH = "push"  # an operator's push to one client
    SYSTEM = "system"  # automatic (opt-out confirmation, help text, price notice)
    MASS = "mass"  # mass push ("animator mode")
    BAN_NOTICE = "ban_notice"  # the service's answer to a banned client's MO (``banned_reply``)


class PartStatus(StrEnum):
    """One submitted segment: ``accepted`` (submit_sm_resp OK) or ``rejected`` (negative response), then
    the receipt's outcome."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"


def enum_type(enum: type[StrEnum]) -> Enum:
    """A VARCHAR column holding the enum's values (no native PostgreSQL ENUM: adding a state later is
    a plain code change, not a type migration)."""
    return Enum(
        enum,
        native_enum=False,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )
