"""`gatewayd user add|passwd|lock|unlock`: account administration from the shell.

The lead's CLI calls `add_user_commands(subparsers)` to build the parsers and, for a parsed
`args.command == "user"`, `await handle_user_command(args, database_url, bus)` for the exit status.
Passwords are never taken from the command line (visible in `ps`): they are prompted for, or read
from standard input with `--password-stdin`.

Locking an account or changing its password ends its sessions; given the deployment's bus (MQTT:
the panels run in other processes), the command announces it there, so the account's open desks end
at once and a locked operator's conversations go back to the queue (`panel.presence`). Without it the
panels notice at their next check.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.bus.base import EventBus
from gatewayd.store.accounts import Account, Role, get_account_by_username
from gatewayd.store.engine import create_engine, session_factory
from panel.auth.accounts import (
    AccountRejected,
    create_account,
    lock_account,
    normalize_username,
    set_password,
    unlock_account,
)
from panel.auth.passwords import PasswordPolicy, PasswordRejected
from panel.auth.permissions import PermissionRegistry
from panel.i18n import Catalog
from panel.presence import announce_account_change
from panel.settings import Argon2Params
from plugins.contract import LANGUAGES
from plugins.loader import load_plugins

#: Seconds the command waits for the broker to take its announcement.
ANNOUNCE_TIMEOUT = 5.0


class UserCommandError(Exception):
    """A user command could not be done; the message is for the operator at the shell."""


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
            print(
                "gatewayd user: the event bus was not reached; "
                "open panel pages notice the change at their next check",
                file=sys.stderr,
            )


@asynccontextmanager
async def _unit_of_work(url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def _existing(session: AsyncSession, username: str) -> Account:
    account = await get_account_by_username(session, normalize_username(username))
    if account is None:
        raise UserCommandError(f"no account named {username!r}")
    return account


def _explain(error: AccountRejected | PasswordRejected) -> str:
    return Catalog.build(()).gettext("en", error.key, **error.params)


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
) -> int:
    """Create an account with its role's default permissions; returns its id."""
    registry = registry or PermissionRegistry.build(load_plugins())
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
    except PasswordRejected as error:
        raise UserCommandError(_explain(error)) from error
    if ended:
        await _announce(bus, account.id)
    return ended


async def user_lock(url: str, username: str, reason: str = "", *, bus: EventBus | None = None) -> int:
    """Lock the account and end its sessions, announced on ``bus``; returns how many sessions were
    ended."""
    async with _unit_of_work(url) as session:
        account = await _existing(session, username)
        ended = await lock_account(session, account, reason)
    await _announce(bus, account.id)
    return ended


async def user_unlock(url: str, username: str) -> None:
    async with _unit_of_work(url) as session:
        await unlock_account(session, await _existing(session, username))


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise UserCommandError("the two passwords differ")
    return first


async def _add(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    password = _read_password(args)
    account_id = await user_add(
        url,
        args.username,
        args.role,
        password,
        args.language,
        display_name=args.display_name,
        timezone=args.timezone,
    )
    return f"account {normalize_username(args.username)!r} created (id {account_id}, role {args.role})"


async def _passwd(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    ended = await user_passwd(url, args.username, _read_password(args), bus=bus)
    return f"password of {normalize_username(args.username)!r} changed; {ended} session(s) ended"


async def _lock(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    ended = await user_lock(url, args.username, args.reason, bus=bus)
    return f"account {normalize_username(args.username)!r} locked; {ended} session(s) ended"


async def _unlock(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    await user_unlock(url, args.username)
    return f"account {normalize_username(args.username)!r} unlocked"


UserAction = Callable[[argparse.Namespace, str, EventBus | None], Awaitable[str]]


def add_user_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `user add|passwd|lock|unlock` to a `parser.add_subparsers(dest="command")` object."""
    user: argparse.ArgumentParser = subparsers.add_parser("user", help="manage panel accounts")
    actions = user.add_subparsers(dest="user_command", required=True)

    add = actions.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=[role.value for role in Role], default=Role.OPERATOR.value)
    add.add_argument("--language", choices=list(LANGUAGES), default="es")
    add.add_argument("--timezone", default="Europe/Madrid")
    add.add_argument("--display-name", dest="display_name", default=None)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(user_action=_add)

    passwd = actions.add_parser("passwd", help="set a new password")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd.set_defaults(user_action=_passwd)

    lock = actions.add_parser("lock", help="lock an account and end its sessions")
    lock.add_argument("username")
    lock.add_argument("--reason", default="")
    lock.set_defaults(user_action=_lock)

    unlock = actions.add_parser("unlock", help="unlock an account and lift its sign-in delay")
    unlock.add_argument("username")
    unlock.set_defaults(user_action=_unlock)
    return user


async def handle_user_command(
    args: argparse.Namespace, database_url: str, bus: EventBus | None = None
) -> int:
    """Run a parsed `user ...` command; prints one line and returns the exit status. ``bus`` (not yet
    entered) is where ended sessions are announced to the running panels."""
    action: UserAction = args.user_action
    try:
        print(await action(args, database_url, bus))
    except UserCommandError as error:
        print(f"gatewayd user {args.user_command}: {error}", file=sys.stderr)
        return 1
    return 0
