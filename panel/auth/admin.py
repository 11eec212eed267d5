"""Account administration outside the web panel (the ``gatewayd user`` commands, the demo): create an
account, set its password, lock, unlock, set its operator pools, list. Each call is one unit of work on
the database at a URL.

Each change is recorded in the audit trail in its own transaction, by the actor ``cli`` from the
source ``cli`` (``account.create``, ``account.password``, ``account.lock``, ``account.unlock``,
``account.pools``); listing records nothing.

Locking an account or changing its password ends its sessions; given the deployment's bus (MQTT:
the panels run in other processes), the change is announced there, so the account's open desks end
at once and a locked operator's conversations go back to the queue (`panel.presence`). Without it the
panels notice at their next check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.bus.base import EventBus
from gatewayd.logging import log_event
from gatewayd.store.accounts import (
    Account,
    Presence,
    Role,
    get_account_by_username,
    list_accounts,
)
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.engine import create_engine, read_session_factory, session_factory
from gatewayd.store.repo_assignment import operator_pools, set_operator_pools
from panel.auth.accounts import (
    AccountRejected,
    check_pool_names,
    create_account,
    lock_account,
    normalize_username,
    set_password,
    unlock_account,
)
from panel.auth.passwords import PasswordPolicy, PasswordRejected
from panel.auth.permissions import PermissionRegistry
from panel.loader import load_plugins
from panel.presence import announce_account_change
from panel.settings import Argon2Params

log = logging.getLogger(__name__)

#: Who and from where the audit trail says a command-line change came.
CLI_ACTOR = "cli"
CLI_SOURCE = "cli"

#: Seconds to wait for the broker to take an announcement.
ANNOUNCE_TIMEOUT = 5.0


class UserCommandError(Exception):
    """An account change could not be made; the message is for the person at the shell."""


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What ``gatewayd user list`` shows of an account: nothing secret (no hash, no session)."""

    username: str
    role: Role
    presence: Presence
    locked: bool
    last_login_at: datetime | None
    #: The operator pools the account is listed in (none: it answers the default pool).
    pools: tuple[str, ...] = ()


async def _announce(bus: EventBus | None, account_id: int) -> None:
    """Tells the running panels that the account's sessions ended (the change is committed already:
    a broker out of reach only delays the panels noticing it)."""
    if bus is None:
        return
    async with bus:
        await announce_account_change(bus, account_id)
        try:
            async with asyncio.timeout(ANNOUNCE_TIMEOUT):
                await bus.flushed()
        except TimeoutError:
            log_event(
                log,
                "account.announce_failed",
                logging.WARNING,
                account_id=account_id,
                reason="the event bus was not reached: open panel pages notice it at their next check",
            )


@asynccontextmanager
async def _unit_of_work(url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def _record(session: AsyncSession, action: str, account: Account, **details: object) -> None:
    """The audit record of a command-line change to ``account``, in the change's transaction."""
    entry = AuditEntry(action, CLI_ACTOR, source=CLI_SOURCE, subject=f"account:{account.id}", details=details)
    await append_audit(session, entry)


async def _existing(session: AsyncSession, username: str) -> Account:
    account = await get_account_by_username(session, normalize_username(username))
    if account is None:
        raise UserCommandError(f"no account named {username!r}")
    return account


def _explain(error: AccountRejected | PasswordRejected) -> str:
    """The reason in English, the language of the command line (the panel translates the same text)."""
    return error.key % error.params if error.params else error.key


async def user_add(
    url: str,
    username: str,
    role: Role | str,
    password: str,
    language: str = "es",
    *,
    display_name: str | None = None,
    timezone: str = "Europe/Madrid",
    argon2: Argon2Params | None = None,
    registry: PermissionRegistry | None = None,
    pools: Collection[str] = (),
) -> int:
    """Create an account with its role's default permissions (those of the installed plugins), listed
    in the operator ``pools`` (none: it answers the default pool); returns its id."""
    registry = registry or PermissionRegistry.build(load_plugins())
    names = _pool_names(pools)
    try:
        async with _unit_of_work(url) as session:
            account = await create_account(
                session,
                PasswordPolicy(argon2 or Argon2Params()),
                registry,
                username=username,
                password=password,
                role=Role(role),
                display_name=display_name,
                language=language,
                timezone=timezone,
            )
            await set_operator_pools(session, account.id, names)
            await _record(
                session,
                "account.create",
                account,
                after={"username": account.username, "role": account.role.value, "pools": names},
            )
            return account.id
    except (AccountRejected, PasswordRejected) as error:
        raise UserCommandError(_explain(error)) from error


async def user_passwd(
    url: str,
    username: str,
    password: str,
    *,
    argon2: Argon2Params | None = None,
    bus: EventBus | None = None,
) -> int:
    """Set a new password (and lift the sign-in delay on the name); returns how many sessions ended
    (announced on ``bus`` when some did)."""
    try:
        async with _unit_of_work(url) as session:
            account = await _existing(session, username)
            ended = await set_password(session, PasswordPolicy(argon2 or Argon2Params()), account, password)
            await _record(session, "account.password", account, by=CLI_ACTOR, sessions_ended=ended)
    except PasswordRejected as error:
        raise UserCommandError(_explain(error)) from error
    if ended:
        await _announce(bus, account.id)
    return ended


async def user_lock(url: str, username: str, reason: str = "", *, bus: EventBus | None = None) -> int:
    """Lock the account and end its sessions, announced on ``bus``; returns how many sessions were
    ended. Never the last active admin."""
    try:
        async with _unit_of_work(url) as session:
            account = await _existing(session, username)
            before = account.locked
            ended = await lock_account(session, account, reason)
            await _record(
                session,
                "account.lock",
                account,
                before={"locked": before},
                after={"locked": True},
                reason=reason,
                sessions_ended=ended,
            )
    except AccountRejected as error:
        raise UserCommandError(_explain(error)) from error
    await _announce(bus, account.id)
    return ended


async def user_unlock(url: str, username: str) -> None:
    async with _unit_of_work(url) as session:
        account = await _existing(session, username)
        before = account.locked
        await unlock_account(session, account)  # also lifts a delay on the name: worth it unlocked too
        if before:
            await _record(
                session, "account.unlock", account, before={"locked": True}, after={"locked": False}
            )


async def user_list(url: str) -> list[AccountSummary]:
    """Every account by name, read without taking a write lock."""
    engine = create_engine(url)
    try:
        async with read_session_factory(engine)() as session:
            accounts = await list_accounts(session)
            pools = await operator_pools(session, [account.id for account in accounts])
            return [
                AccountSummary(
                    account.username,
                    account.role,
                    account.presence,
                    account.locked,
                    account.last_login_at,
                    tuple(sorted(pools.get(account.id, ()))),
                )
                for account in accounts
            ]
    finally:
        await engine.dispose()


def _pool_names(pools: Collection[str]) -> list[str]:
    try:
        return check_pool_names(pools)
    except AccountRejected as error:
        raise UserCommandError(_explain(error)) from error


async def user_pools(url: str, username: str, pools: Collection[str] | None = None) -> list[str]:
    """Lists the account in exactly ``pools`` (empty: in none, so it answers the default pool), or,
    with None, changes nothing; returns the pools it is listed in. Conversations it holds stay with it;
    the next ones follow its new pools."""
    async with _unit_of_work(url) as session:
        account = await _existing(session, username)
        listed = sorted((await operator_pools(session, [account.id])).get(account.id, ()))
        if pools is None:
            return listed
        names = _pool_names(pools)
        await set_operator_pools(session, account.id, names)
        await _record(session, "account.pools", account, before={"pools": listed}, after={"pools": names})
        return names
