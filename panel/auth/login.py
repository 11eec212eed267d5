"""Sign-in: per-address rate limit, per-name progressive delay, argon2 verification, the new session.

A sign-in never holds a transaction while argon2 runs, and argon2 never runs on the event loop:

1. a read-only look (no write lock on SQLite): is the address rate limited, is the user name in its
   delay, which hash to check; a refusal here costs no hashing and no write, and is answered after a
   short pause (`refusal_pause_seconds`, never beyond its Retry-After) so that a client repeating
   refused attempts back to back gets one answer per pause per connection: in the demo the panel
   shares the daemon's event loop, and a flood answered at once would take the loop's time from
   the MOs;
2. the hash, in the panel's hashing workers (`PasswordHashing`), outside any transaction;
3. one short write transaction: the attempt, the name's failure count, on success the account's
   sign-in time, the presented session revoked and the new session, and the audit record of the
   outcome (``auth.login`` or ``auth.login_failed``) when the caller gave one.

Refusals of step 1 and a busy hashing pool write nothing, not even an audit record: they stay free
of the write lock, so a flood of them cannot hold up the daemon's commits.

Unknown names, wrong passwords and accounts locked by an administrator get the same answer, cost the
same argon2 run and count the same way against the name typed, so neither the message, the delay nor
the timing tells which names exist.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import (
    Account,
    LoginAttempt,
    clear_login_failures,
    get_account_by_username,
    get_login_throttle,
    record_login_failure,
)
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.base import utcnow
from panel.auth.accounts import normalize_username
from panel.auth.passwords import MAX_PASSWORD_LENGTH, HashingBusy
from panel.auth.sessions import IssuedSession, create_session, revoke_session
from panel.runtime import PanelRuntime
from panel.settings import PanelSettings

# Seconds a client is asked to wait when every hashing worker is busy.
BUSY_RETRY_AFTER = 1


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"  # unknown user name or wrong password
    LOCKED = "locked"  # an account an administrator locked: recorded, answered as BAD_CREDENTIALS
    DELAYED = "delayed"  # too soon after the last failures under this user name
    RATE_LIMITED = "rate_limited"  # too many failures from this address
    BUSY = "busy"  # every hashing worker is busy and their queue is full


@dataclass(frozen=True, slots=True)
class SignIn:
    """What a sign-in form brings: ``presented_token`` is the session cookie the browser sent with
    it, if any (revoked when the sign-in succeeds: one browser, one signed-in user)."""

    username: str
    password: str
    ip: str | None
    user_agent: str | None = None
    presented_token: str | None = None


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    issued: IssuedSession | None = None
    retry_after: int | None = None  # seconds, when DELAYED, RATE_LIMITED or BUSY


def login_delay(failures: int, settings: PanelSettings) -> timedelta:
    """The wait before the next try after ``failures`` recent failures under one user name."""
    beyond = failures - settings.login_free_failures
    if beyond <= 0:
        return timedelta(0)
    seconds = settings.login_delay_seconds * 2 ** min(beyond - 1, 32)
    return timedelta(seconds=min(seconds, settings.login_delay_max_seconds))


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


async def _address_blocked_until(
    session: AsyncSession, ip: str, settings: PanelSettings, now: datetime
) -> datetime | None:
    """While ``ip_max_failures`` failures from ``ip`` lie within the window: until the oldest of the
    most recent ones leaves it."""
    window = timedelta(minutes=settings.ip_window_minutes)
    result = await session.execute(
        select(LoginAttempt.attempted_at)
        .where(
            LoginAttempt.ip == ip,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.attempted_at >= now - window,
        )
        .order_by(LoginAttempt.attempted_at.desc())
        .offset(settings.ip_max_failures - 1)
        .limit(1)
    )
    oldest_counted = result.scalar_one_or_none()
    return None if oldest_counted is None else oldest_counted + window


async def _name_delayed_until(
    session: AsyncSession, username: str, settings: PanelSettings, now: datetime
) -> datetime | None:
    throttle = await get_login_throttle(session, username)
    if throttle is None or throttle.last_failure_at < now - _failure_window(settings):
        return None
    not_before = throttle.last_failure_at + login_delay(throttle.failures, settings)
    return not_before if not_before > now else None


def _failure_window(settings: PanelSettings) -> timedelta:
    return timedelta(minutes=settings.login_failure_window_minutes)


async def _refusal(
    session: AsyncSession, settings: PanelSettings, username: str, ip: str | None, now: datetime
) -> LoginResult | None:
    """A refusal that needs no password check: the address is rate limited, or the name delayed."""
    if ip is not None:
        blocked_until = await _address_blocked_until(session, ip, settings, now)
        if blocked_until is not None:
            return LoginResult(LoginOutcome.RATE_LIMITED, retry_after=_seconds_until(blocked_until, now))
    delayed_until = await _name_delayed_until(session, username, settings, now)
    if delayed_until is not None:
        return LoginResult(LoginOutcome.DELAYED, retry_after=_seconds_until(delayed_until, now))
    return None


async def _paced(refused: LoginResult, settings: PanelSettings) -> LoginResult:
    """``refused`` after the refusal pause, outside any transaction (a sleeping task holds nothing
    but its connection, and uvicorn's ``limit_concurrency`` bounds those)."""
    pause = settings.refusal_pause_seconds
    if refused.retry_after is not None:
        pause = min(pause, refused.retry_after)
    if pause > 0:
        await asyncio.sleep(pause)
    return refused


async def _open_session(
    session: AsyncSession,
    state: PanelRuntime,
    attempt: SignIn,
    checked: Account,
    rehashed: str | None,
    now: datetime,
) -> IssuedSession | None:
    """The new session, or None when the account changed since its hash was checked (a new password,
    an administrator's lock)."""
    account = await session.get(Account, checked.id, with_for_update=True, populate_existing=True)
    if account is None or account.locked or account.password_hash != checked.password_hash:
        return None
    if rehashed is not None:
        account.password_hash = rehashed
    account.last_login_at = now
    if attempt.presented_token:
        await revoke_session(session, attempt.presented_token, now=now)
    return await create_session(
        session, account, state.settings, ip=attempt.ip, user_agent=attempt.user_agent, now=now
    )


#: The actor of a failed sign-in's audit record: nobody signed in (the typed name is in its details).
ANONYMOUS_ACTOR = "-"


def _audit_entry(
    entry: AuditEntry, outcome: LoginOutcome, username: str, account: Account | None
) -> AuditEntry:
    """``entry`` (its source) made the record of the attempt's outcome: the account signing in, or
    the anonymous actor with the typed name and the outcome (never the password)."""
    if outcome is LoginOutcome.OK and account is not None:
        return replace(
            entry,
            action="auth.login",
            actor=account.username,
            actor_id=account.id,
            subject=f"account:{account.id}",
            details={},
        )
    return replace(
        entry,
        action="auth.login_failed",
        actor=ANONYMOUS_ACTOR,
        actor_id=None,
        subject=f"account:{account.id}" if account is not None else None,
        details={"username": username, "outcome": outcome.value},
    )


async def sign_in(
    state: PanelRuntime, attempt: SignIn, *, now: datetime | None = None, audit: AuditEntry | None = None
) -> LoginResult:
    """Check a user name and password and, when they are right, open a session (see the module's
    docstring for the steps and what each costs). ``audit``: the entry whose source the attempt is
    recorded under (its action, actor, subject and details are set from the outcome)."""
    now = now or utcnow()
    settings = state.settings
    typed = normalize_username(attempt.username)
    # throttled and audited under its first 64 characters (the columns' width); no account's name is
    # longer, so a longer one is nobody's, not the account its first 64 characters name
    username = typed[:64]
    password = attempt.password[: MAX_PASSWORD_LENGTH + 1]
    async with state.readers() as session:
        refused = await _refusal(session, settings, username, attempt.ip, now)
        known = refused is None and len(typed) <= 64
        account = await get_account_by_username(session, username) if known else None
    if refused is not None:
        return await _paced(refused, settings)

    try:
        verified = await state.hashing.verify_or_decoy(
            account.password_hash if account is not None else None, password
        )
        rehashed = None
        if verified and account is not None and state.passwords.needs_rehash(account.password_hash):
            rehashed = await state.hashing.hash(password)
    except HashingBusy:
        return await _paced(LoginResult(LoginOutcome.BUSY, retry_after=BUSY_RETRY_AFTER), settings)

    outcome = LoginOutcome.BAD_CREDENTIALS
    if account is not None and account.locked:
        outcome = LoginOutcome.LOCKED
    elif verified:
        outcome = LoginOutcome.OK
    issued: IssuedSession | None = None
    async with state.sessionmaker() as session, session.begin():
        if outcome is LoginOutcome.OK and account is not None:
            issued = await _open_session(session, state, attempt, account, rehashed, now)
            if issued is None:
                outcome = LoginOutcome.BAD_CREDENTIALS
        session.add(
            LoginAttempt(
                username=username,
                ip=attempt.ip,
                succeeded=outcome is LoginOutcome.OK,
                outcome=outcome.value,
                attempted_at=now,
            )
        )
        if outcome is LoginOutcome.OK:
            await clear_login_failures(session, username)
        else:
            await record_login_failure(session, username, now, forget_before=now - _failure_window(settings))
        if audit is not None:
            await append_audit(session, _audit_entry(audit, outcome, username, account), now=now)
    return LoginResult(outcome, issued)
