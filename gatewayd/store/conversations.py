"""Conversations: one chat between a subscriber and a short code, answered by one operator at a time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.accounts import POOL_NAME_LENGTH
from gatewayd.store.base import Base, utcnow
from gatewayd.store.enums import ConversationStatus, enum_type
from gatewayd.store.subscribers import ID_TYPE


class Conversation(Base):
    """At most one conversation per (subscriber, short code) is not closed (a partial unique index):
    the MO pipeline's get-or-open is race-free across daemons."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index(
            "uq_conversations_active",
            "subscriber_id",
            "short_code",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
        Index("ix_conversations_status_waiting_since", "status", "waiting_since"),
        # Only assigned conversations: a new one (every first MO) costs no entry here.
        Index(
            "ix_conversations_assigned_operator_id",
            "assigned_operator_id",
            sqlite_where=text("assigned_operator_id IS NOT NULL"),
            postgresql_where=text("assigned_operator_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    #: The subscriber's id, without a foreign key: the MO ingest creates or reads the subscriber in the
    #: transaction that opens the conversation (see migration 0005).
    subscriber_id: Mapped[int] = mapped_column(ID_TYPE)
    short_code: Mapped[str] = mapped_column(String(16))
    status: Mapped[ConversationStatus] = mapped_column(
        enum_type(ConversationStatus), default=ConversationStatus.WAITING
    )
    service: Mapped[str | None] = mapped_column(String(32), default=None)
    #: The operator pool the MO route decided when the conversation opened (``gatewayd.routes``):
    #: only operators of this pool are offered it. None (opened before pools were stored): the
    #: default pool's (``gatewayd.assignment``).
    operator_pool: Mapped[str | None] = mapped_column(String(POOL_NAME_LENGTH), default=None)
    #: The route's call-centre flag when the conversation opened, kept for the call-centre diversion.
    callcentre: Mapped[bool] = mapped_column(default=False, server_default=false())
    assigned_operator_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_mo_at: Mapped[datetime | None] = mapped_column(default=None)
    last_mt_at: Mapped[datetime | None] = mapped_column(default=None)
    waiting_since: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, status={self.status!r})"
