"""Panel accounts: operators, masters and admins, their server-side web sessions and login attempts.

Policy (password hashing, locking, rate limits) lives in `panel.auth`; this module only holds the
tables and the plain queries other layers need (the daemon reads presence and capacity to assign
conversations).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, bindparam, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base, UTCDateTime, utcnow


class Role(StrEnum):
    ADMIN = "admin"
    MASTER = "master"
    OPERATOR = "operator"


class Presence(StrEnum):
    ONLINE = "online"
    PAUSED = "paused"
    OFFLINE = "offline"


def _enum_values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=_enum_values, validate_strings=True)
    )
    # Explicit grants, sorted; admins hold every permission whatever is stored here.
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    locked: Mapped[bool] = mapped_column(default=False)
    lock_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    language: Mapped[str] = mapped_column(String(8), default="es")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Madrid")
    presence: Mapped[Presence] = mapped_column(
        Enum(Presence, native_enum=False, length=16, values_callable=_enum_values, validate_strings=True),
        default=Presence.OFFLINE,
    )
    max_open_conversations: Mapped[int] = mapped_column(default=5)
    # When the operator's desk was last seen live (its event stream marks it at every heartbeat);
    # None once they left. Assignment counts only operators seen within a short grace.
    desk_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Account(id={self.id!r}, username={self.username!r}, role={self.role!r})"


async def count_active_admins(session: AsyncSession) -> int:
    """How many admin accounts are not locked (the panel never lets this fall to zero). Their rows
    stay locked until the caller's transaction ends (PostgreSQL; SQLite's write transactions run one
    at a time): two admins locking each other at once are counted one after the other, so the
    second sees the first's change instead of both seeing two admins."""
    found = await session.execute(
        select(Account.id)
        .where(Account.role == Role.ADMIN, Account.locked.is_(False))
        .order_by(Account.id)
        .with_for_update()
    )
    return len(found.all())


#: The longest operator pool name (the configuration refuses longer ones).
POOL_NAME_LENGTH = 64


def check_pool_name(name: str) -> str:
    """A pool name as stored: stripped, 1 to :data:`POOL_NAME_LENGTH` characters; ValueError else."""
    name = name.strip()
    if not name or len(name) > POOL_NAME_LENGTH:
        raise ValueError(f"a pool name has 1 to {POOL_NAME_LENGTH} characters, got {name!r}")
    return name


class AccountPool(Base):
    """An operator answers the conversations of this pool (the MO routes' ``operator_pool``). An
    operator with no row answers the default pool (``gatewayd.assignment``)."""

    __tablename__ = "account_pools"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    pool: Mapped[str] = mapped_column(String(POOL_NAME_LENGTH), primary_key=True)


class WebSession(Base):
    """A browser session. `id` is the SHA-256 of the cookie token: a database leak opens no session."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(255), default=None)


class LoginAttempt(Base):
    """One login try; counted per client address for rate limiting and kept for the audit trail."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_ip_attempted_at", "ip", "attempted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    succeeded: Mapped[bool]
    outcome: Mapped[str] = mapped_column(String(32))
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Recent failed sign-ins under one user name, whether an account has that name or not (so a
    delay tells nothing about which names exist). Deleted by a successful sign-in, a new password or
    an unlock."""

    __tablename__ = "login_throttles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int]
    last_failure_at: Mapped[datetime]


async def get_account(session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


async def get_account_by_username(session: AsyncSession, username: str) -> Account | None:
    result = await session.execute(select(Account).where(Account.username == username))
    return result.scalar_one_or_none()


async def list_accounts(session: AsyncSession) -> Sequence[Account]:
    result = await session.execute(select(Account).order_by(Account.username))
    return result.scalars().all()


async def get_login_throttle(session: AsyncSession, username: str) -> LoginThrottle | None:
    return await session.get(LoginThrottle, username)


# The same statement on SQLite and PostgreSQL: both speak INSERT ... ON CONFLICT DO UPDATE alike.
_RECORD_LOGIN_FAILURE = text(
    """
    INSERT INTO login_throttles (username, failures, last_failure_at) VALUES (:username, 1, :now)
    ON CONFLICT (username) DO UPDATE SET
        failures = CASE WHEN login_throttles.last_failure_at >= :forget_before
                        THEN login_throttles.failures + 1 ELSE 1 END,
        last_failure_at = :now
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("forget_before", type_=UTCDateTime()))


async def record_login_failure(
    session: AsyncSession, username: str, now: datetime, *, forget_before: datetime
) -> None:
    """One more failure under ``username``; failures from before ``forget_before`` no longer count.
    One statement, so concurrent failures under one name all count."""
    await session.execute(
        _RECORD_LOGIN_FAILURE, {"username": username, "now": now, "forget_before": forget_before}
    )


async def clear_login_failures(session: AsyncSession, username: str) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.username == username))
