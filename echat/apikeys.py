"""``gatewayd apikey add|list|revoke``: the integrator API's keys from the shell (the admin panel's
"API keys" page does the same). ``add`` prints the key once; only its hash is stored."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from echat.users import SharedOptions
from gatewayd.store.apikeys import APIKey, Scope, list_keys
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine, read_session_factory, session_factory
from panel.api.keys import KeySpec, add_key, revoke
from panel.auth.admin import CLI_ACTOR, CLI_SOURCE


class APIKeyCommandError(Exception):
    """What the command could not do, said to the person at the terminal."""


def add_apikey_commands(subparsers: Any, shared: SharedOptions) -> argparse.ArgumentParser:
    """Add ``apikey add|list|revoke`` to a ``parser.add_subparsers(dest="command")`` object."""
    apikey: argparse.ArgumentParser = subparsers.add_parser("apikey", help="keys of the integrator API")
    shared(apikey)
    actions = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="make a key (printed once)")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=[scope.value for scope in Scope],
        help="repeat for each scope",
    )
    add.add_argument("--allow", action="append", default=[], help="a CIDR the key may be used from")
    add.add_argument("--rate", type=float, default=None, help="requests a second (per panel process)")
    shared(add)

    listing = actions.add_parser("list", help="every key: id, name, scopes, last use, revoked")
    shared(listing)

    revoking = actions.add_parser("revoke", help="revoke a key (refused from its next request on)")
    revoking.add_argument("id", type=int)
    shared(revoking)
    return apikey


@asynccontextmanager
async def _unit_of_work(url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def _add(args: argparse.Namespace, url: str) -> str:
    try:
        spec = KeySpec(name=args.name, scopes=args.scopes, allow=args.allow, rate=args.rate)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise APIKeyCommandError(problems) from None
    async with _unit_of_work(url) as session:
        made = await add_key(session, spec, actor=CLI_ACTOR, actor_id=None, source=CLI_SOURCE, now=utcnow())
    return f"key {made.key.id} ({made.key.name}) made; it is shown this once:\n{made.token}"


async def _revoke(args: argparse.Namespace, url: str) -> str:
    async with _unit_of_work(url) as session:
        key = await revoke(session, args.id, actor=CLI_ACTOR, actor_id=None, source=CLI_SOURCE, now=utcnow())
    if key is None:
        raise APIKeyCommandError(f"no live key {args.id}")
    return f"key {key.id} ({key.name}) revoked"


def format_keys(keys: Sequence[APIKey]) -> str:
    header = ("ID", "NAME", "SCOPES", "ALLOW", "RATE", "LAST USE (UTC)", "REVOKED (UTC)")

    def when(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"

    rows = [
        (
            str(key.id),
            key.name,
            ",".join(key.scopes),
            ",".join(key.allow) or "any",
            f"{key.rate:g}/s" if key.rate is not None else "-",
            when(key.last_used_at),
            when(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


async def _list(url: str) -> str:
    engine = create_engine(url)
    try:
        async with read_session_factory(engine)() as session:
            return format_keys(await list_keys(session))
    finally:
        await engine.dispose()


async def handle_apikey_command(args: argparse.Namespace, url: str) -> str:
    """The command's answer; raises :class:`APIKeyCommandError` for what it could not do."""
    if args.apikey_command == "add":
        return await _add(args, url)
    if args.apikey_command == "revoke":
        return await _revoke(args, url)
    return await _list(url)
