"""Subscribers: the people who text the short codes, known by MSISDN and by a pseudonymous client ID."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base, utcnow

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class Subscriber(Base):
    """``client_id`` (``C`` + 8 base32 characters, random) is what operators and reports show; the
    MSISDN (E.164 digits, no ``+``) stays in this table."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(16), unique=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    carrier: Mapped[str | None] = mapped_column(String(32), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    alias: Mapped[str | None] = mapped_column(String(64), default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    opted_out: Mapped[bool] = mapped_column(default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(default=None)
    banned: Mapped[bool] = mapped_column(default=False)
    banned_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    banned_at: Mapped[datetime | None] = mapped_column(default=None)
    session_reset_at: Mapped[datetime | None] = mapped_column(default=None)
    mo_count: Mapped[int] = mapped_column(default=0)
    mt_count: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"Subscriber(id={self.id!r}, client_id={self.client_id!r})"
