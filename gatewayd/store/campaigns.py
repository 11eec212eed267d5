"""Mass push campaigns ("animator mode", manual 1.6): one ``campaigns`` row per campaign, one
``campaign_recipients`` row per client it goes to.

The recipients are a snapshot of the audience taken when the campaign starts
(``gatewayd.store.repo_campaigns``); ``UNIQUE (campaign_id, subscriber_id)`` makes "no client gets a
campaign twice" hold across restarts and daemons. A recipient moves ``pending -> queued`` (its MT in
the outbox, ``mt_id`` set, in one transaction) ``-> sent -> delivered | failed``, or ends ``refused``
(opted out or banned since the audience was taken, when queued or sent: ``reason``), ``cancelled`` or
``skipped`` (the outbox could not route or render it: ``reason``). The campaign
keeps one counter per recipient state, moved in the transaction that moves the recipients, so its
progress is one row read whatever the audience size.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base, utcnow
from gatewayd.store.enums import enum_type
from gatewayd.store.subscribers import ID_TYPE

NAME_LENGTH = 100
#: The longest template an admin may write (the rendered text is checked against the SMS limit).
TEXT_LENGTH = 2000


class CampaignStatus(StrEnum):
    """``draft -> scheduled -> running <-> paused -> finished | cancelled``."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class RecipientState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # in the outbox, not submitted yet
    SENT = "sent"  # accepted by the SMSC, no receipt yet
    DELIVERED = "delivered"
    FAILED = "failed"  # failed or expired
    REFUSED = "refused"  # opted out or banned since the audience was taken: ``reason`` says which
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never queued: ``reason`` says why


#: The states whose recipient still waits for its MT's outcome.
OPEN_STATES = (RecipientState.QUEUED, RecipientState.SENT)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status_scheduled_at", "status", "scheduled_at"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    #: The audience: clients who sent an MO after at least one of the last ``last_pushes`` pushes they
    #: received since their session reset; with ``include_new``, clients with no push since then too.
    last_pushes: Mapped[int] = mapped_column()
    include_new: Mapped[bool] = mapped_column(default=True)
    service: Mapped[str | None] = mapped_column(String(32), default=None)
    carrier: Mapped[str | None] = mapped_column(String(32), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    active_days: Mapped[int | None] = mapped_column(default=None)
    #: MTs per second this campaign queues at most (the carriers' binds pace the sending itself).
    tps: Mapped[int] = mapped_column()
    #: Send in the recipients' quiet hours too.
    ignore_quiet_hours: Mapped[bool] = mapped_column(default=False)
    #: The pace's token bucket (MTs it may queue now, as of ``pace_at``), shared by every daemon that
    #: feeds the campaign: one pace per campaign, however many daemons (``gatewayd.campaigns.Pace``).
    pace_tokens: Mapped[float | None] = mapped_column(Float, default=None)
    pace_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[CampaignStatus] = mapped_column(enum_type(CampaignStatus), default=CampaignStatus.DRAFT)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # One counter per recipient state (see the module's docstring).
    total: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    queued: Mapped[int] = mapped_column(default=0)
    sent: Mapped[int] = mapped_column(default=0)
    delivered: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    cancelled: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    # The sender reads the pending rows of a campaign in id order, and the open ones (MT not final)
    # to follow their MTs: partial indexes keep both small as the campaign goes on.
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_campaign_recipients_campaign_id"),
        Index(
            "ix_campaign_recipients_pending",
            "campaign_id",
            "id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        Index(
            "ix_campaign_recipients_open",
            "campaign_id",
            "mt_id",
            postgresql_where=text("state IN ('queued', 'sent')"),
            sqlite_where=text("state IN ('queued', 'sent')"),
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    # Without foreign keys: the snapshot inserts a million rows in one statement, and a key would cost
    # a check per row (campaigns are never deleted; subscribers' rows are not either).
    campaign_id: Mapped[int] = mapped_column(ID_TYPE)
    subscriber_id: Mapped[int] = mapped_column(ID_TYPE)
    state: Mapped[RecipientState] = mapped_column(enum_type(RecipientState), default=RecipientState.PENDING)
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    mt_id: Mapped[int | None] = mapped_column(ID_TYPE, default=None)
