"""``gatewayd user add|passwd|lock|unlock|pools|list``: panel accounts from the shell.

Passwords are never taken from the command line (visible in `ps`): they are prompted for, or read
from standard input with `--password-stdin`. The work is `panel.auth.admin`'s; this module parses the
command, prints one answer and gives the exit status.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from gatewayd.assignment import DEFAULT_POOL
from gatewayd.bus.base import EventBus
from gatewayd.store.accounts import Role
from panel.auth.accounts import normalize_username
from panel.auth.admin import (
    AccountSummary,
    UserCommandError,
    user_add,
    user_list,
    user_lock,
    user_passwd,
    user_pools,
    user_unlock,
)
from panel.i18n import LANGUAGES

UserAction = Callable[[argparse.Namespace, str, EventBus | None], Awaitable[str]]
#: Adds the command line's shared options (``--config``) to a parser.
SharedOptions = Callable[[argparse.ArgumentParser], None]


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
        pools=args.pools,
    )
    created = f"account {normalize_username(args.username)!r} created (id {account_id}, role {args.role})"
    return f"{created}, {_serves(args.pools)}"


def _serves(pools: Collection[str]) -> str:
    if not pools:
        return f"in no pool: answers the pool {DEFAULT_POOL!r}"
    return "answers the pool(s) " + ", ".join(repr(pool) for pool in sorted(set(pools)))


async def _pools(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    if args.none and args.pools:
        raise UserCommandError("name pools or --none, not both")
    pools = [] if args.none else (args.pools or None)
    listed = await user_pools(url, args.username, pools)
    return f"{normalize_username(args.username)!r} {_serves(listed)}"


async def _passwd(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    ended = await user_passwd(url, args.username, _read_password(args), bus=bus)
    return f"password of {normalize_username(args.username)!r} changed; {ended} session(s) ended"


async def _lock(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    ended = await user_lock(url, args.username, args.reason, bus=bus)
    return f"account {normalize_username(args.username)!r} locked; {ended} session(s) ended"


async def _unlock(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    await user_unlock(url, args.username)
    return f"account {normalize_username(args.username)!r} unlocked"


async def _list(args: argparse.Namespace, url: str, bus: EventBus | None) -> str:
    return format_accounts(await user_list(url))


def format_accounts(accounts: Sequence[AccountSummary]) -> str:
    """One line per account under a header: name, role, presence, locked, operator pools ("(default)":
    in none, it answers the default pool), last sign-in (UTC)."""
    header = ("USER", "ROLE", "PRESENCE", "LOCKED", "POOLS", "LAST SIGN-IN (UTC)")
    rows = [
        (
            account.username,
            account.role.value,
            account.presence.value,
            "yes" if account.locked else "no",
            ",".join(account.pools) if account.pools else f"({DEFAULT_POOL})",
            account.last_login_at.strftime("%Y-%m-%d %H:%M:%S") if account.last_login_at else "never",
        )
        for account in accounts
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in [header, *rows]
    )


def add_user_commands(subparsers: Any, shared: SharedOptions) -> argparse.ArgumentParser:
    """Add ``user add|passwd|lock|unlock|list`` to a ``parser.add_subparsers(dest="command")`` object;
    ``shared`` adds the options every command takes to each of them."""
    user: argparse.ArgumentParser = subparsers.add_parser("user", help="manage panel accounts")
    shared(user)
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=[role.value for role in Role], default=Role.OPERATOR.value)
    add.add_argument("--language", choices=list(LANGUAGES), default="es")
    add.add_argument("--timezone", default="Europe/Madrid")
    add.add_argument("--display-name", dest="display_name", default=None)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument(
        "--pool",
        dest="pools",
        action="append",
        default=[],
        metavar="POOL",
        help=f"an operator pool it answers (repeat for several; none: the pool {DEFAULT_POOL!r})",
    )
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

    pools = actions.add_parser(
        "pools",
        help="show the operator pools an account answers, or set them (the conversations it holds stay)",
    )
    pools.add_argument("username")
    pools.add_argument("pools", nargs="*", metavar="POOL", help="the pools it answers from now on")
    pools.add_argument(
        "--none", action="store_true", help=f"in no pool: it answers the pool {DEFAULT_POOL!r}"
    )
    pools.set_defaults(user_action=_pools)

    listing = actions.add_parser(
        "list", help="list the accounts (name, role, presence, locked, pools, last sign-in)"
    )
    listing.set_defaults(user_action=_list)

    for action in (add, passwd, lock, unlock, pools, listing):
        shared(action)
    return user


async def handle_user_command(
    args: argparse.Namespace,
    database_url: str,
    bus: EventBus | None = None,
    *,
    routed_pools: Collection[str] | None = None,
) -> int:
    """Run a parsed ``user ...`` command; prints its answer and returns the exit status. ``bus`` (not
    yet entered) is where ended sessions are announced to the running panels; ``routed_pools``, the
    pools the configuration's MO routes name, makes it warn about a pool no conversation will have."""
    action: UserAction = args.user_action
    try:
        print(await action(args, database_url, bus))
    except UserCommandError as error:
        print(f"gatewayd user {args.user_command}: {error}", file=sys.stderr)
        return 1
    unrouted = sorted(set(getattr(args, "pools", None) or ()) - set(routed_pools or ()))
    if routed_pools is not None and unrouted:
        named = ", ".join(repr(pool) for pool in unrouted)
        print(
            f"gatewayd user {args.user_command}: warning: no MO route of the configuration gives the "
            f"pool(s) {named}: no conversation is offered there",
            file=sys.stderr,
        )
    return 0
