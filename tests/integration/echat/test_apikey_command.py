"""``gatewayd apikey add|list|revoke`` as operators run it (a child process): the key printed once and
never listed, it authenticates until revoked, a bad network or scope refused with a message, each
change in the audit trail by ``cli``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from gatewayd.store.apikeys import APIKey, authenticate
from gatewayd.store.audit import AuditRecord
from gatewayd.store.engine import create_engine, read_session_factory
from tests.integration.echat.helpers import gatewayd, write_config

pytestmark = pytest.mark.integration


async def _lookup(url: str, token: str) -> tuple[APIKey | None, list[tuple[str, str]]]:
    engine = create_engine(url)
    try:
        async with read_session_factory(engine)() as session:
            key = await authenticate(session, token)
            records = (await session.execute(select(AuditRecord.action, AuditRecord.actor))).all()
            return key, [(action, actor) for action, actor in records]
    finally:
        await engine.dispose()


def test_a_key_is_made_listed_used_and_revoked_from_the_command_line(tmp_path: Path, sqlite_url: str) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    assert gatewayd("migrate", "--config", config).returncode == 0
    added = gatewayd(
        "apikey", "add", "--name", "crm", "--scope", "send", "--scope", "read",
        "--allow", "10.0.0.0/8", "--rate", "50", "--config", config,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("ek_")

    key, records = asyncio.run(_lookup(sqlite_url, token))
    assert key is not None and key.scopes == ["read", "send"] and key.allow == ["10.0.0.0/8"]
    assert key.rate == 50 and records == [("apikey.create", "cli")]

    listed = gatewayd("apikey", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "SCOPES", "ALLOW", "RATE"]
    assert row.split()[:5] == [str(key.id), "crm", "read,send", "10.0.0.0/8", "50/s"]
    assert token.split("_", 2)[2] not in listed.stdout

    revoked = gatewayd("apikey", "revoke", str(key.id), "--config", config)
    assert revoked.returncode == 0, revoked.stderr
    key_id = key.id
    key, records = asyncio.run(_lookup(sqlite_url, token))
    assert key is None and records[-1] == ("apikey.revoke", "cli")
    again = gatewayd("apikey", "revoke", "--config", config, str(key_id))
    assert again.returncode == 1 and "no live key" in again.stderr


def test_bad_values_are_refused_with_a_message(tmp_path: Path, sqlite_url: str) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    assert gatewayd("migrate", "--config", config).returncode == 0
    bad = gatewayd(
        "apikey", "add", "--name", "x", "--scope", "send", "--allow", "10.0.0.300/8", "--config", config
    )
    assert bad.returncode == 1 and "not an address or a network" in bad.stderr
    for rate in ("0", "5e-324"):
        slow = gatewayd("apikey", "add", "--name", "x", "--scope", "send", "--rate", rate, "--config", config)
        assert slow.returncode == 1 and "rate" in slow.stderr
    scope = gatewayd("apikey", "add", "--name", "x", "--scope", "everything", "--config", config)
    assert scope.returncode == 2 and "invalid choice" in scope.stderr
