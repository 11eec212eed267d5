"""Server-side web sessions: the browser holds a random token, the database only its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import Account, WebSession
from gatewayd.store.base import utcnow
from panel.settings import PanelSettings

# last_seen_at is written at most this often, so page views do not each cost a write.
TOUCH_INTERVAL = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class IssuedSession:
    token: str  # goes to the cookie, never stored
    record: WebSession


async def create_session(
    session: AsyncSession,
    account: Account,
    settings: PanelSettings,
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> IssuedSession:
    now = now or utcnow()
    token = new_token()
    record = WebSession(
        id=hash_token(token),
        account_id=account.id,
        csrf_token=new_token(),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.session_lifetime_hours),
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(record)
    await session.flush()
    return IssuedSession(token=token, record=record)


async def get_active_session(
    session: AsyncSession, token: str, settings: PanelSettings, *, now: datetime | None = None
) -> tuple[WebSession, Account] | None:
    """The live session and its account, or None when revoked, expired, idle too long or locked out."""
    now = now or utcnow()
    record = await session.get(WebSession, hash_token(token))
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        return None
    if now - record.last_seen_at > timedelta(minutes=settings.session_idle_minutes):
        return None
    account = await session.get(Account, record.account_id)
    if account is None or account.locked:
        return None
    return record, account


def needs_touch(record: WebSession, *, now: datetime | None = None) -> bool:
    """Whether the session's last-seen time is due to be written (see `TOUCH_INTERVAL`)."""
    return (now or utcnow()) - record.last_seen_at >= TOUCH_INTERVAL


async def touch_session(session: AsyncSession, session_id: str, *, now: datetime | None = None) -> None:
    """Mark activity. The caller commits."""
    await session.execute(
        update(WebSession).where(WebSession.id == session_id).values(last_seen_at=now or utcnow())
    )


async def revoke_session(session: AsyncSession, token: str, *, now: datetime | None = None) -> bool:
    result = await session.execute(
        update(WebSession)
        .where(WebSession.id == hash_token(token), WebSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_account_sessions(
    session: AsyncSession, account_id: int, *, now: datetime | None = None, keep_session_id: str | None = None
) -> int:
    statement = update(WebSession).where(WebSession.account_id == account_id, WebSession.revoked_at.is_(None))
    if keep_session_id is not None:
        statement = statement.where(WebSession.id != keep_session_id)
    result = await session.execute(statement.values(revoked_at=now or utcnow()))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def list_account_sessions(session: AsyncSession, account_id: int) -> list[WebSession]:
    result = await session.execute(
        select(WebSession).where(WebSession.account_id == account_id).order_by(WebSession.created_at)
    )
    return list(result.scalars().all())
