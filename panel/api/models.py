"""The API's bodies: pydantic models (``extra="forbid"``: an unknown field is an error), from which the
OpenAPI document's schemas are generated."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from gatewayd.net_safety import MAX_URL
from gatewayd.outbox import MAX_SEGMENTS
from gatewayd.store.webhooks import NAME_LENGTH, WebhookEvent

#: Items of one batch.
MAX_BATCH = 1000
#: Characters of a template's text before rendering (the outbox checks the rendered SMS).
MAX_TEXT = 160 * MAX_SEGMENTS


# What no column can store: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (no UTF-8 form).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    if UNSTORABLE.search(value):
        raise ValueError("contains NUL or a lone surrogate, which cannot be stored")
    return value


Text = Annotated[str, AfterValidator(_storable)]


def _in_utc(value: datetime) -> datetime:
    # The store's columns take UTC; an offset that moves the time past year 1 or 9999 has no UTC form.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


def _iso_8601(value: object) -> object:
    # pydantic would also read a number (or a string of digits) as Unix seconds: the document says
    # ISO 8601 text, so that is all a time is read from.
    if not isinstance(value, str) or value.strip().lstrip("+-").isdigit():
        raise ValueError("must be an ISO 8601 date and time with its zone, e.g. 2026-12-06T10:00:00Z")
    return value


#: A time with its zone (a naive one is refused), as UTC: what a filter compares with the store.
UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(Strict):
    """One MT. ``text`` may hold the manual's variables (``{telefono}``, ``{host}``, ``{operador}``,
    ``{hora}``, ``{fecha}``, ``{pais}``), rendered by the gateway."""

    to: Text = Field(min_length=1, max_length=32, description="E.164 (with or without '+') or national")
    text: Text = Field(min_length=1, max_length=MAX_TEXT)
    carrier: Text | None = Field(None, min_length=1, max_length=32, description="Default: automatic")
    source: Text | None = Field(None, min_length=1, max_length=16, description="Source short code")


class BatchIn(Strict):
    items: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


#: What ``not_before`` says wherever an answer carries it.
NOT_BEFORE = (
    "Set when the MT is a push held for the client's quiet hours: it leaves at this time (UTC), not "
    "before; null when it leaves as soon as it can"
)


class Queued(BaseModel):
    index: int
    status: Literal["queued"] = "queued"
    id: int = Field(description="The MT's id: GET /messages/{id}")
    not_before: datetime | None = Field(None, description=NOT_BEFORE)


class Refused(BaseModel):
    index: int
    status: Literal["refused"] = "refused"
    reason: str = Field(
        description="opted_out, banned, awaiting_acceptance, awaiting_confirmation, spend_cap (the "
        "recipient rule), invalid_number, no_route, empty, unencodable or too_long"
    )
    detail: str


class SendResult(BaseModel):
    queued: int
    refused: int
    items: list[Queued | Refused]


class Part(BaseModel):
    segment: int
    status: str
    smsc_message_id: str | None
    submitted_at: datetime | None
    receipt_state: str | None = Field(description="The receipt's state (DELIVRD, UNDELIV, ...)")
    receipt_at: datetime | None
    error_code: int | None


class Message(BaseModel):
    id: int
    kind: str
    status: str
    carrier: str
    source: str
    to: str | None = Field(description="Only with the msisdn scope")
    client_id: str | None
    text: str
    segments: int
    created_at: datetime
    not_before: datetime | None = Field(
        description="While queued: the earliest time it leaves (a push held for quiet hours, a retry)"
    )
    last_error: str | None
    parts: list[Part]


# --- lists: cursor pagination and filters ----------------------------------------------------------


class ListQuery(Strict):
    """Newest first. ``cursor``: the ``next_cursor`` of the page before (opaque)."""

    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, max_length=64)
    since: UtcTime | None = Field(None, description="At or after (ISO 8601 with a zone)")
    until: UtcTime | None = Field(None, description="Before (ISO 8601 with a zone)")


class MOQuery(ListQuery):
    short_code: Text | None = Field(None, max_length=16)
    client_id: Text | None = Field(None, max_length=16)


class ConversationQuery(MOQuery):
    status: Literal["waiting", "open", "closed"] | None = None


class ClientQuery(ListQuery):
    status: Literal["active", "opted_out", "banned"] | None = Field(
        None, description="since / until: when the client last wrote"
    )


class MO(BaseModel):
    id: int
    client_id: str
    msisdn: str | None = Field(description="Only with the msisdn scope")
    carrier: str
    short_code: str
    service: str | None
    keyword: str | None
    text: str
    received_at: datetime
    conversation_id: int | None


class MOPage(BaseModel):
    """A page of MOs, newest first."""

    items: list[MO]
    next_cursor: str | None


class Conversation(BaseModel):
    id: int
    client_id: str
    short_code: str
    service: str | None
    status: str
    opened_at: datetime
    last_mo_at: datetime | None
    last_mt_at: datetime | None
    closed_at: datetime | None


class ConversationPage(BaseModel):
    """A page of conversations, newest first."""

    items: list[Conversation]
    next_cursor: str | None


class Client(BaseModel):
    """A client (subscriber), known by the client ID."""

    client_id: str
    msisdn: str | None = Field(description="Only with the msisdn scope")
    carrier: str | None
    country: str | None
    first_seen: datetime
    last_seen: datetime
    opted_out: bool
    banned: bool
    banned_reason: str | None
    mo_count: int
    mt_count: int


class ClientPage(BaseModel):
    """A page of clients, newest first."""

    items: list[Client]
    next_cursor: str | None


class BanIn(Strict):
    reason: Text = Field(min_length=1, max_length=255)


# --- webhook subscriptions -------------------------------------------------------------------------

Events = Annotated[list[WebhookEvent], Field(min_length=1, max_length=len(WebhookEvent))]


class WebhookIn(Strict):
    """A new subscription. The URL is checked as the worker will reach it: http or https, no user name
    or password, its host resolving to public addresses only (unless ``[webhooks] allow`` lists it)."""

    name: Text = Field(min_length=1, max_length=NAME_LENGTH, description="Unique")
    url: Text = Field(min_length=1, max_length=MAX_URL)
    events: Events
    include_msisdn: bool = Field(False, description="Payloads carry the MSISDN (needs the msisdn scope)")
    active: bool = True


class WebhookChange(Strict):
    """The fields to change (any of them); the secret changes only by rotation. A subscription that
    carries the MSISDN after the change (``include_msisdn``) is changed only by a key with the msisdn
    scope."""

    name: Text | None = Field(None, min_length=1, max_length=NAME_LENGTH)
    url: Text | None = Field(None, min_length=1, max_length=MAX_URL)
    events: Events | None = None
    include_msisdn: bool | None = Field(
        None, description="true, or any change of a subscription that keeps it true, needs the msisdn scope"
    )
    active: bool | None = None


class Webhook(BaseModel):
    """A subscription (its secret is never shown again after creation or rotation)."""

    id: int
    name: str
    url: str
    events: list[str]
    include_msisdn: bool
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    """The subscription made, with its secret: shown this once."""

    secret: str = Field(description="The HMAC-SHA256 key of the signatures (hex): shown this once")


class WebhookPage(BaseModel):
    """The subscriptions, by name."""

    items: list[Webhook]


class WebhookSecret(BaseModel):
    """The new secret, shown this once; the old one also signs until ``previous_secret_until``."""

    id: int
    secret: str
    previous_secret_until: datetime


class DeliveryQuery(Strict):
    """Newest first. ``cursor``: the ``next_cursor`` of the page before (opaque)."""

    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, max_length=64)
    state: Literal["pending", "waiting", "delivered", "dead", "failing"] | None = Field(
        None, description="failing: pending after at least one failed try"
    )


class Delivery(BaseModel):
    id: int = Field(description="The delivery id the receiver got (X-Echat-Delivery)")
    event: str
    client_id: str = Field(
        description=(
            "Deliveries of one client are made in order. An MT's event for a number that never wrote "
            "(no client) carries the number instead, its digits masked with • without the msisdn scope"
        )
    )
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    requeued_at: datetime | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """A page of a subscription's deliveries, newest first."""

    items: list[Delivery]
    next_cursor: str | None


class Redelivered(BaseModel):
    """The dead delivery queued again (its client's next)."""

    id: int
    state: str
