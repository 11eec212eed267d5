"""The desk's names for states and outcomes, in English for the catalogue; pages and the live stream
translate them where they are shown."""

from __future__ import annotations

from types import MappingProxyType, SimpleNamespace

from gatewayd.store.enums import ConversationStatus, MTKind, MTStatus
from gatewayd.store.errors import RefusalReason
from gatewayd.store.repo_history import BANNED, OPTED_OUT, SUBMIT_REJECTED
from routing.premium import PremiumState
from translations import N_

CONVERSATION_STATUS = MappingProxyType(
    {
        ConversationStatus.WAITING.value: N_("Waiting for an answer"),
        ConversationStatus.OPEN.value: N_("Answered"),
        ConversationStatus.CLOSED.value: N_("Closed"),
    }
)
MT_STATUS = MappingProxyType(
    {
        MTStatus.QUEUED.value: N_("Queued"),
        MTStatus.SENDING.value: N_("Sending"),
        MTStatus.ACCEPTED.value: N_("Accepted"),
        MTStatus.DELIVERED.value: N_("Delivered"),
        MTStatus.FAILED.value: N_("Failed"),
        MTStatus.EXPIRED.value: N_("Expired"),
        MTStatus.REFUSED.value: N_("Refused"),
        MTStatus.CANCELLED.value: N_("Cancelled"),
    }
)
#: The notice after a redirect (``?notice=``); anything else in the address shows none.
NOTICES = MappingProxyType(
    {
        "sent": N_("Reply queued for sending."),
        "closed": N_("Conversation closed."),
        "saved": N_("Client card saved."),
        "pushed": N_("Push SMS queued for sending."),
    }
)
REFUSED = MappingProxyType(
    {
        RefusalReason.BANNED: N_("Not sent: the client is banned."),
        RefusalReason.OPTED_OUT: N_("Not sent: the client opted out (STOP)."),
        RefusalReason.AWAITING_ACCEPTANCE: N_("Not sent: the client has not accepted the price notice yet."),
        RefusalReason.AWAITING_CONFIRMATION: N_(
            "Not sent: the chat is paused until the client confirms the spend."
        ),
        RefusalReason.SPEND_CAP: N_("Not sent: the client reached this month's spend cap."),
    }
)
#: A text the outbox refuses (:class:`gatewayd.outbox.TextRefused`), by its reason.
TEXT_REFUSED = MappingProxyType(
    {
        "empty": N_("Write a message."),
        "unencodable": N_("The message holds characters that cannot be sent."),
        "too_long": N_("The message is too long (10 SMS at most)."),
    }
)
#: Why an MT failed (:func:`gatewayd.store.repo_history.failure_code`): receipt states and refusals.
FAILURES = MappingProxyType(
    {
        "UNDELIV": N_("Undeliverable (UNDELIV)"),
        "EXPIRED": N_("Expired before delivery (EXPIRED)"),
        "REJECTD": N_("Rejected by the carrier (REJECTD)"),
        "DELETED": N_("Deleted by the carrier (DELETED)"),
        "UNKNOWN": N_("Delivery unknown (UNKNOWN)"),
        BANNED: N_("Refused by policy: the client is banned"),
        OPTED_OUT: N_("Refused by policy: the client opted out"),
        RefusalReason.AWAITING_ACCEPTANCE.value: N_("Refused: the client had not accepted the price notice"),
        RefusalReason.AWAITING_CONFIRMATION.value: N_(
            "Refused: the chat was paused until the client confirms"
        ),
        RefusalReason.SPEND_CAP.value: N_("Refused: the client reached this month's spend cap"),
        SUBMIT_REJECTED: N_("Refused by the SMSC when sent"),
    }
)
#: A client's standing on a billed service (``routing.premium.PremiumState``), on the client card.
PREMIUM_STATE = MappingProxyType(
    {
        PremiumState.NORMAL.value: N_("Normal"),
        PremiumState.AWAITING.value: N_("Awaiting acceptance of the price notice"),
        PremiumState.PAUSED.value: N_("Paused until the client confirms"),
        PremiumState.CAPPED.value: N_("Monthly spend cap reached"),
    }
)
#: Why the reply box is closed while the client is held on a billed service.
REPLY_HELD = MappingProxyType(
    {
        PremiumState.AWAITING.value: N_(
            "Replies are held: the client has not accepted the price notice yet (they answer %(keywords)s)."
        ),
        PremiumState.PAUSED.value: N_(
            "Replies are held: the chat is paused until the client confirms the spend "
            "(they answer %(keywords)s)."
        ),
        PremiumState.CAPPED.value: N_("Replies are stopped: the client reached this month's spend cap."),
    }
)
MT_KIND = MappingProxyType(
    {
        MTKind.REPLY.value: N_("Reply"),
        MTKind.PUSH.value: N_("Push"),
        MTKind.SYSTEM.value: N_("Automatic"),
        MTKind.MASS.value: N_("Mass push"),
        MTKind.BAN_NOTICE.value: N_("Ban notice"),
    }
)
NO_CARRIER = N_("This client's carrier is unknown: cannot send.")

#: What the desk's templates read as ``labels``.
LABELS = SimpleNamespace(
    conversation_status=CONVERSATION_STATUS,
    mt_status=MT_STATUS,
    notices=NOTICES,
    failures=FAILURES,
    mt_kind=MT_KIND,
    premium_state=PREMIUM_STATE,
    reply_held=REPLY_HELD,
)
