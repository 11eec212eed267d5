"""The spend of every month a client was billed in, per billed service (``premium_months``,
migration 0019): what the reports read, since a premium account (:mod:`gatewayd.store.premium`)
keeps its client's current month only.

A month's row follows its account in the transaction that changes the account, which holds the
account's row locked: :func:`keep_months` writes the account's spend as it is saved (the account's
value is authoritative, so the upsert sets it, never adds to it), :func:`give_back` lowers the
month a given-back charge was counted in (only ever the account's current month: a closed month is
not reopened, in the account or here). A month's spend is therefore as charged minus what was given
back.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, ForeignKey, String, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store._tables import table_of
from gatewayd.store.base import Base


class PremiumMonth(Base):
    """A client's spend on one billed service in one month of the service's zone; the key leads with
    (service, month), as the reports group by them."""

    __tablename__ = "premium_months"

    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: ``YYYY-MM`` in the service's zone (the account's ``month``).
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    #: Minor units: charged minus given back.
    spent: Mapped[int] = mapped_column(BigInteger, default=0)


MONTHS = table_of(PremiumMonth)

_KEEP = text(
    "INSERT INTO premium_months (service, month, subscriber_id, spent) "
    "VALUES (:service, :month, :subscriber_id, :spent) "
    "ON CONFLICT (service, month, subscriber_id) DO UPDATE SET spent = excluded.spent"
)


async def keep_months(session: AsyncSession, spends: Iterable[tuple[int, str, str, int]]) -> None:
    """Writes (subscriber id, service, month, spent) of accounts being saved (locked in this
    transaction); an account with no month yet (``''``: before its first decided MO) has none."""
    rows = [
        {"subscriber_id": sid, "service": service, "month": month, "spent": spent}
        for sid, service, month, spent in sorted(spends)
        if month
    ]
    if rows:
        await session.execute(_KEEP, rows)


async def give_back(session: AsyncSession, subscriber_id: int, service: str, month: str, amount: int) -> None:
    """Takes ``amount`` given back off the client's ``month`` of ``service`` (the account's current
    month, whose row is locked by the caller)."""
    await session.execute(
        update(MONTHS)
        .where(
            MONTHS.c.service == service,
            MONTHS.c.month == month,
            MONTHS.c.subscriber_id == subscriber_id,
        )
        .values(spent=MONTHS.c.spent - amount)
    )
