"""The integrator API's keys and its remembered answers (issue 14).

A key is given once as ``ek_<public id>_<secret>``; the store keeps the public id (to find the row) and
the SHA-256 of the secret. The secret is 32 random bytes: nobody guesses it or brute-forces its hash,
so a slow password hash would buy nothing and cost every request its time. A revoked key keeps its row
(the audit trail names it) and is refused from the next request on: nothing caches a key.

``api_idempotency`` holds, per key and ``Idempotency-Key`` header, the hash of the request and the
answer given; the row is written in the transaction that queues the MTs, so a request either sent and
left its answer or did neither. Rows older than a day are not replayed, and are swept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, String, UniqueConstraint, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import MAX_INT32_ID, Base

KEY_PREFIX = "ek"
PUBLIC_ID_LENGTH = 12  # hex: never holds the "_" that separates the parts
NAME_LENGTH = 64
IDEMPOTENCY_KEY_LENGTH = 128
#: How long a request's answer is kept for a repeated Idempotency-Key.
IDEMPOTENCY_KEPT = timedelta(hours=24)


class Scope(StrEnum):
    SEND = "send"  # queue MTs
    READ = "read"  # read MTs, MOs, conversations, clients (by client ID)
    ADMIN = "admin"  # opt-out, opt-in, ban, unban
    MSISDN = "msisdn"  # see phone numbers in what it reads


class APIKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(PUBLIC_ID_LENGTH), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # CIDRs the key may be used from; empty: anywhere.
    allow: Mapped[list[str]] = mapped_column(JSON)
    # Requests a second (a token bucket per panel process); None: unlimited.
    rate: Mapped[float | None] = mapped_column(Float, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class APIIdempotency(Base):
    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("key_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(index=True)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``token`` is shown once and never stored."""

    key: APIKey
    token: str


def parse_token(token: str) -> tuple[str, str] | None:
    """(public id, secret) of ``ek_<public id>_<secret>``; None when it has not that shape."""
    prefix, _, rest = token.partition("_")
    public_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(public_id) != PUBLIC_ID_LENGTH or not secret or not token.isascii():
        return None
    return public_id, secret


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: list[Scope],
    allow: list[str],
    rate: float | None,
    created_by: str,
    now: datetime,
) -> NewKey:
    public_id = secrets.token_hex(PUBLIC_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    key = APIKey(
        public_id=public_id,
        secret_sha256=_digest(secret),
        name=name,
        scopes=sorted(scope.value for scope in set(scopes)),
        allow=list(allow),
        rate=rate,
        created_by=created_by,
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return NewKey(key, f"{KEY_PREFIX}_{public_id}_{secret}")


async def authenticate(session: AsyncSession, token: str) -> APIKey | None:
    """The live key ``token`` names, None when it is unknown, wrong or revoked."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    public_id, secret = parsed
    key = await session.scalar(select(APIKey).where(APIKey.public_id == public_id))
    if key is None or key.revoked_at is not None:
        return None
    return key if hmac.compare_digest(key.secret_sha256, _digest(secret)) else None


async def list_keys(session: AsyncSession) -> list[APIKey]:
    return list((await session.scalars(select(APIKey).order_by(APIKey.id))).all())


async def revoke_key(session: AsyncSession, key_id: int, now: datetime) -> APIKey | None:
    """Revokes a live key; None when there is no such live key."""
    if key_id > MAX_INT32_ID:
        return None
    key = await session.scalar(select(APIKey).where(APIKey.id == key_id).with_for_update())
    if key is None or key.revoked_at is not None:
        return None
    key.revoked_at = now
    await session.flush()
    return key


async def touch_key(session: AsyncSession, key_id: int, now: datetime) -> None:
    await session.execute(update(APIKey).where(APIKey.id == key_id).values(last_used_at=now))


async def remembered(
    session: AsyncSession, key_id: int, idempotency_key: str, now: datetime
) -> APIIdempotency | None:
    """The answer kept for ``idempotency_key``; None also when it is older than
    :data:`IDEMPOTENCY_KEPT`: the sweep runs hourly, so that row is deleted here, in the caller's
    transaction, for the request's own answer to take its place."""
    row = await session.scalar(
        select(APIIdempotency).where(
            APIIdempotency.key_id == key_id, APIIdempotency.idempotency_key == idempotency_key
        )
    )
    if row is not None and row.created_at < now - IDEMPOTENCY_KEPT:
        # A statement, not session.delete(): a twin request may have deleted it first (0 rows is fine).
        await session.execute(delete(APIIdempotency).where(APIIdempotency.id == row.id))
        session.expunge(row)
        return None
    return row


async def remember(
    session: AsyncSession,
    *,
    key_id: int,
    idempotency_key: str,
    request_sha256: str,
    status: int,
    response: dict[str, Any],
    now: datetime,
) -> None:
    """Stores the answer in the caller's transaction; a concurrent twin makes the flush raise
    ``IntegrityError`` (the caller then replays the twin's answer)."""
    row = APIIdempotency(
        key_id=key_id,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        status=status,
        response=response,
        created_at=now,
    )
    session.add(row)
    await session.flush()


async def sweep_idempotency(session: AsyncSession, now: datetime) -> int:
    """Forgets answers older than :data:`IDEMPOTENCY_KEPT`; how many."""
    result = await session.execute(
        delete(APIIdempotency).where(APIIdempotency.created_at < now - IDEMPOTENCY_KEPT)
    )
    return int(getattr(result, "rowcount", 0) or 0)
