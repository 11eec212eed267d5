"""Account management: create, change password, lock and unlock. The caller commits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.store.accounts import (
    POOL_NAME_LENGTH,
    Account,
    Role,
    check_pool_name,
    clear_login_failures,
    count_active_admins,
    get_account_by_username,
)
from gatewayd.store.base import utcnow
from panel.auth.passwords import PasswordPolicy, check_password_rules
from panel.auth.permissions import PermissionRegistry
from panel.auth.sessions import revoke_account_sessions
from panel.i18n import LANGUAGES, is_valid_timezone
from translations import N_

#: The bounds of an operator's limit of open conversations.
MIN_CONVERSATIONS = 1
MAX_CONVERSATIONS = 50
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AccountRejected(ValueError):
    """Account data breaks a rule: `key` (English, translated where shown) and `params` say which."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key % params if params else key)
        self.key = key
        self.params = params


def normalize_username(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    normalized = normalize_username(username)
    if not USERNAME.match(normalized):
        raise AccountRejected(N_("Invalid user name: 2 to 64 letters, digits, '.', '_' or '-'."))
    return normalized


def check_conversation_limit(limit: int) -> int:
    if not MIN_CONVERSATIONS <= limit <= MAX_CONVERSATIONS:
        raise AccountRejected(
            N_("The conversation limit is a number from %(low)d to %(high)d."),
            low=MIN_CONVERSATIONS,
            high=MAX_CONVERSATIONS,
        )
    return limit


def check_pool_names(pools: Iterable[str]) -> list[str]:
    """The pool names as stored, sorted and once each (see `check_pool_name`)."""
    try:
        return sorted({check_pool_name(pool) for pool in pools})
    except ValueError as error:
        raise AccountRejected(
            N_("A pool name has 1 to %(length)d characters."), length=POOL_NAME_LENGTH
        ) from error


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise AccountRejected(N_("Language not available."))
    return language


def check_timezone(timezone: str) -> str:
    if not is_valid_timezone(timezone):
        raise AccountRejected(N_("Unknown time zone."))
    return timezone


async def create_account(
    session: AsyncSession,
    passwords: PasswordPolicy,
    registry: PermissionRegistry,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    language: str = "es",
    timezone: str = "Europe/Madrid",
    permissions: Iterable[str] | None = None,
    created_by: int | None = None,
    max_open_conversations: int = 5,
) -> Account:
    """A new account; without `permissions` it gets its role's defaults. Hashes on the calling
    thread: the panel's requests hash in its workers and call `add_account`."""
    username = check_username(username)
    check_password_rules(password, username)
    return await add_account(
        session,
        registry,
        username=username,
        password_hash=passwords.hash(password),
        role=role,
        display_name=display_name,
        language=language,
        timezone=timezone,
        permissions=permissions,
        created_by=created_by,
        max_open_conversations=max_open_conversations,
    )


async def add_account(
    session: AsyncSession,
    registry: PermissionRegistry,
    *,
    username: str,
    password_hash: str,
    role: Role,
    display_name: str | None = None,
    language: str = "es",
    timezone: str = "Europe/Madrid",
    permissions: Iterable[str] | None = None,
    created_by: int | None = None,
    max_open_conversations: int = 5,
) -> Account:
    """A new account whose password (its rules already checked) is hashed already."""
    username = check_username(username)
    granted = registry.defaults_for(role) if permissions is None else registry.validate(permissions)
    if await get_account_by_username(session, username) is not None:
        raise AccountRejected(N_("That user name already exists."))
    account = Account(
        username=username,
        display_name=(display_name or username).strip()[:128],
        password_hash=password_hash,
        role=role,
        permissions=sorted(granted),
        language=check_language(language),
        timezone=check_timezone(timezone),
        created_by=created_by,
        max_open_conversations=check_conversation_limit(max_open_conversations),
    )
    session.add(account)
    await session.flush()
    return account


async def set_password(
    session: AsyncSession,
    passwords: PasswordPolicy,
    account: Account,
    new_password: str,
    *,
    keep_session_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Change the password and end every other session of the account; returns how many ended.
    Hashes on the calling thread: the panel's requests hash in its workers and call
    `store_password_hash`."""
    check_password_rules(new_password, account.username)
    return await store_password_hash(
        session, account, passwords.hash(new_password), keep_session_id=keep_session_id, now=now
    )


async def store_password_hash(
    session: AsyncSession,
    account: Account,
    password_hash: str,
    *,
    keep_session_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Store a new password's hash (its rules already checked), forget the failed sign-ins under the
    account's name and end every other session of the account; returns how many ended."""
    now = now or utcnow()
    account.password_hash = password_hash
    account.password_changed_at = now
    await clear_login_failures(session, account.username)
    return await revoke_account_sessions(session, account.id, now=now, keep_session_id=keep_session_id)


async def set_permissions(account: Account, registry: PermissionRegistry, permissions: Iterable[str]) -> None:
    account.permissions = sorted(registry.validate(permissions))


async def lock_account(
    session: AsyncSession, account: Account, reason: str, *, now: datetime | None = None
) -> int:
    """Lock by an administrator (until unlocked) and end the account's sessions at once; never the
    last active admin (`AccountRejected`)."""
    if account.role is Role.ADMIN and not account.locked:
        await ensure_another_admin(session)
    account.locked = True
    account.lock_reason = reason.strip()[:255] or None
    return await revoke_account_sessions(session, account.id, now=now or utcnow())


async def unlock_account(session: AsyncSession, account: Account) -> None:
    """Lift the administrator's lock and the delay recent failed sign-ins put on the account's name."""
    account.locked = False
    account.lock_reason = None
    await clear_login_failures(session, account.username)


async def ensure_another_admin(session: AsyncSession) -> None:
    """Raises `AccountRejected` unless another active admin remains once one admin is locked or
    loses the role (the caller holds the change in its transaction)."""
    if await count_active_admins(session) <= 1:
        raise AccountRejected(N_("The last active administrator cannot be locked or lose the role."))


async def set_role(session: AsyncSession, account: Account, role: Role) -> None:
    """Change the account's role; an active admin only while another active admin remains."""
    if account.role is Role.ADMIN and role is not Role.ADMIN and not account.locked:
        await ensure_another_admin(session)
    account.role = role
