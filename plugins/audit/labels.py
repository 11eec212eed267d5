"""The names the trail shows for the keys of a record's details (``account.lock`` stores
``{"reason": ..., "sessions_ended": ...}``), in English for the catalogue, and the keys whose values are
instants (stored as ISO 8601 in UTC, shown in the reader's time zone). A key not named here is shown
in a readable form of itself (``sessions_ended`` -> "Sessions ended")."""

from __future__ import annotations

from types import MappingProxyType

from translations import N_

DETAIL_LABELS = MappingProxyType(
    {
        # accounts, sign-in, profile
        "username": N_("User name"),
        "display_name": N_("Display name"),
        "role": N_("Role"),
        "language": N_("Language"),
        "timezone": N_("Time zone"),
        "pools": N_("Operator pools"),
        "max_open_conversations": N_("Open conversations at once"),
        "permissions": N_("Powers"),
        "granted": N_("Powers granted"),
        "revoked": N_("Powers taken away"),
        "reason": N_("Reason"),
        "locked": N_("Locked"),
        "sessions_ended": N_("Sessions ended"),
        "by": N_("By"),
        "outcome": N_("Outcome"),
        # clients, premium chat, services
        "banned": N_("Banned"),
        "opted_out": N_("Opted out"),
        "keyword": N_("Keyword"),
        "short_code": N_("Short code"),
        "service": N_("Service"),
        "alias": N_("Alias"),
        "notes": N_("Notes"),
        "acceptance": N_("Acceptance word"),
        "state": N_("State"),
        "first": N_("First notice"),
        "at": N_("Threshold"),
        "spent": N_("Spent"),
        "currency": N_("Currency"),
        "quiet": N_("Within quiet hours"),
        "diverted": N_("Diverted"),
        "session_reset_at": N_("Session reset"),
        "closed_conversations": N_("Conversations closed"),
        # messages, conversations
        "mt_ids": N_("Messages"),
        "mt_id": N_("Message"),
        "kind": N_("Kind"),
        "operator_id": N_("Operator"),
        "held_until": N_("Held until"),
        "refused": N_("Messages refused"),
        "idempotency_key": N_("Idempotency key"),
        # campaigns
        "name": N_("Name"),
        "text": N_("Text"),
        "audience": N_("Audience"),
        "last_pushes": N_("Last pushes"),
        "include_new": N_("New clients"),
        "carrier": N_("Carrier"),
        "country": N_("Country"),
        "active_days": N_("Active days"),
        "tps": N_("Messages per second"),
        "ignore_quiet_hours": N_("Ignores quiet hours"),
        "scheduled_at": N_("Scheduled for"),
        "withdrawn_mts": N_("Messages withdrawn"),
        # API keys, webhooks
        "key": N_("API key"),
        "scopes": N_("Scopes"),
        "allow": N_("Allowed from"),
        "rate": N_("Rate"),
        "url": N_("Address"),
        "events": N_("Events"),
        "include_msisdn": N_("Phone number included"),
        "active": N_("Active"),
        "deliveries": N_("Deliveries"),
        "queued": N_("Queued"),
        # photo gallery
        "album": N_("Album"),
        "content_type": N_("File type"),
        "bytes": N_("Bytes"),
        "width": N_("Width"),
        "height": N_("Height"),
        # the trail itself; an export's filters, named as the trail's form names them
        "filters": N_("Filters"),
        "actor": N_("User"),
        "action": N_("Action"),
        "subject": N_("Subject"),
        "source": N_("Source"),
        "from": N_("From"),
        "to": N_("To"),
        "q": N_("Text in the details"),
        "records": N_("Records"),
        "intact": N_("Chain intact"),
        "bad_seq": N_("Broken at record"),
    }
)

#: The keys whose values are instants (``datetime.isoformat()``, in UTC): a text, or a mapping of texts
#: (the API's ``held_until``: message id -> when it leaves).
TIME_KEYS = frozenset({"held_until", "scheduled_at", "session_reset_at"})

YES, NO = N_("Yes"), N_("No")


def readable(key: str) -> str:
    """A key no label names, as words: ``closed_conversations`` -> "Closed conversations"."""
    words = " ".join(key.replace("_", " ").replace(".", " ").split())
    return words[:1].upper() + words[1:] if words else key
