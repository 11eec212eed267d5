"""Sign-in: argon2 verification, failed-login lock and per-address rate limit. The caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import Account, LoginAttempt, get_account_by_username
from gatewayd.store.base import utcnow
from panel.auth.accounts import normalize_username
from panel.auth.passwords import MAX_PASSWORD_LENGTH, PasswordPolicy
from panel.settings import PanelSettings


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"  # locked by an administrator
    TEMPORARILY_LOCKED = "temporarily_locked"  # too many failed passwords
    RATE_LIMITED = "rate_limited"  # too many failures from this address


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    account: Account | None = None
    locked_until: datetime | None = None


async def _recent_failures_from(session: AsyncSession, ip: str, since: datetime) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.ip == ip, LoginAttempt.succeeded.is_(False), LoginAttempt.attempted_at >= since)
    )
    return int(result.scalar_one())


async def authenticate(
    session: AsyncSession,
    passwords: PasswordPolicy,
    settings: PanelSettings,
    *,
    username: str,
    password: str,
    ip: str | None,
    now: datetime | None = None,
) -> LoginResult:
    """Check a user name and password. Every path runs one argon2 verification, so timing tells little."""
    now = now or utcnow()
    username = normalize_username(username)[:64]
    password = password[: MAX_PASSWORD_LENGTH + 1]

    def record(outcome: LoginOutcome) -> None:
        session.add(
            LoginAttempt(
                username=username,
                ip=ip,
                succeeded=outcome is LoginOutcome.OK,
                outcome=outcome.value,
                attempted_at=now,
            )
        )

    if ip is not None:
        window_start = now - timedelta(minutes=settings.ip_window_minutes)
        if await _recent_failures_from(session, ip, window_start) >= settings.ip_max_failures:
            passwords.spend_decoy(password)
            record(LoginOutcome.RATE_LIMITED)
            return LoginResult(LoginOutcome.RATE_LIMITED)

    account = await get_account_by_username(session, username)
    if account is None:
        passwords.spend_decoy(password)
        record(LoginOutcome.BAD_CREDENTIALS)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)

    if account.locked:
        passwords.spend_decoy(password)
        record(LoginOutcome.LOCKED)
        return LoginResult(LoginOutcome.LOCKED, account)

    if account.locked_until is not None and account.locked_until > now:
        # No verification during the lock: it must not become a password oracle.
        passwords.spend_decoy(password)
        record(LoginOutcome.TEMPORARILY_LOCKED)
        return LoginResult(LoginOutcome.TEMPORARILY_LOCKED, account, account.locked_until)

    if not passwords.verify(account.password_hash, password):
        account.failed_logins += 1
        if account.failed_logins >= settings.max_failed_logins:
            account.failed_logins = 0
            account.locked_until = now + timedelta(minutes=settings.lock_minutes)
            record(LoginOutcome.TEMPORARILY_LOCKED)
            return LoginResult(LoginOutcome.TEMPORARILY_LOCKED, account, account.locked_until)
        record(LoginOutcome.BAD_CREDENTIALS)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)

    if passwords.needs_rehash(account.password_hash):
        account.password_hash = passwords.hash(password)
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    record(LoginOutcome.OK)
    return LoginResult(LoginOutcome.OK, account)
