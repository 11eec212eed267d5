"""Per-service settings the admin changes at run time: the call-centre diversion switch.

A service has a row only once an admin switched it: until then the configuration's
``[[services]] callcentre`` is its value (``gatewayd.diversion``). ``version`` counts the switches of
the row, so the sum over all rows grows with every switch anywhere: the version a process caches.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base

#: ``[[services]] name`` is at most 32 characters (``gatewayd.config``).
SERVICE_NAME_LENGTH = 32


class ServiceSetting(Base):
    __tablename__ = "service_settings"

    service: Mapped[str] = mapped_column(String(SERVICE_NAME_LENGTH), primary_key=True)
    callcentre_diverted: Mapped[bool] = mapped_column()
    changed_at: Mapped[datetime] = mapped_column()
    #: The account that switched it last (None once that account is gone) and its user name then.
    changed_by_id: Mapped[int | None] = mapped_column(default=None)
    changed_by: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)


async def service_settings(session: AsyncSession) -> dict[str, ServiceSetting]:
    """Every switched service's row, by service name."""
    rows = (await session.execute(select(ServiceSetting))).scalars()
    return {row.service: row for row in rows}


async def settings_version(session: AsyncSession) -> int:
    """How many switches were made, all services together (0: none yet)."""
    return int(await session.scalar(select(func.coalesce(func.sum(ServiceSetting.version), 0))) or 0)


async def switch_diversion(
    session: AsyncSession, service: str, diverted: bool, now: datetime, *, by: str, by_id: int | None
) -> bool | None:
    """Sets the service's diversion (creating its row on the first switch), its row locked until the
    caller commits; returns what the row said before (None: never switched, the configuration's
    value held). Two first switches at once: the second finds the first's row and updates it."""
    row = await session.get(ServiceSetting, service, with_for_update=True)
    if row is None:
        try:
            async with session.begin_nested():
                session.add(
                    ServiceSetting(
                        service=service,
                        callcentre_diverted=diverted,
                        changed_at=now,
                        changed_by=by[:64],
                        changed_by_id=by_id,
                        version=1,
                    )
                )
            return None
        except IntegrityError:  # another transaction made the row since the look above
            row = await session.get(ServiceSetting, service, with_for_update=True, populate_existing=True)
            if row is None:
                raise
    previous = row.callcentre_diverted
    row.callcentre_diverted = diverted
    row.changed_at = now
    row.changed_by = by[:64]
    row.changed_by_id = by_id
    row.version += 1
    await session.flush()
    return previous
