"""The audit trail's chain on SQLite and PostgreSQL: records numbered without gaps under concurrent
appends, an action and its record committed together, and ``gatewayd audit verify`` finding an
edited, deleted or reordered record (and a removed tail) by number."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from echat.cli import main
from gatewayd.schema import upgrade
from gatewayd.store.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditFilter,
    AuditHead,
    AuditRecord,
    append_audit,
    audit_actions,
    audit_has,
    audit_page,
    verify_audit,
)
from gatewayd.store.engine import create_engine, read_session_factory, session_factory


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    url = database_url
    await upgrade(url)
    made = create_engine(url)
    yield made
    await made.dispose()


async def record(engine: AsyncEngine, action: str, **details: object) -> None:
    async with session_factory(engine)() as session, session.begin():
        await append_audit(
            session,
            AuditEntry(action, "ana", actor_id=7, source="192.0.2.1", subject="account:3", details=details),
        )


async def check(engine: AsyncEngine) -> tuple[bool, int, int | None]:
    async with read_session_factory(engine)() as session:
        found = await verify_audit(session)
    return found.intact, found.records, found.bad_seq


async def test_concurrent_appends_make_one_chain_numbered_without_gaps(engine: AsyncEngine) -> None:
    await asyncio.gather(*(record(engine, "account.lock", n=n, name="Ñandú ✓") for n in range(40)))
    async with read_session_factory(engine)() as session:
        rows = (await session.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all()
        head = await session.get(AuditHead, 1)
    assert [row.seq for row in rows] == list(range(1, 41))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(rows, rows[1:], strict=False))
    assert sorted(row.details["n"] for row in rows) == list(range(40))
    assert head is not None and (head.seq, head.hash) == (40, rows[-1].hash)
    assert await check(engine) == (True, 40, None)


async def test_a_rolled_back_action_leaves_no_record_and_no_gap(engine: AsyncEngine) -> None:
    await record(engine, "auth.login")
    with pytest.raises(RuntimeError):
        async with session_factory(engine)() as session, session.begin():
            await append_audit(session, AuditEntry("account.lock", "ana"))
            raise RuntimeError("the action failed")
    await record(engine, "auth.logout")
    async with read_session_factory(engine)() as session:
        actions = (await session.execute(select(AuditRecord.seq, AuditRecord.action))).all()
    assert sorted(actions) == [(1, "auth.login"), (2, "auth.logout")]
    assert await check(engine) == (True, 2, None)


@pytest.mark.parametrize("tampering", ["edit", "edit_details", "delete", "swap", "truncate"])
async def test_verify_finds_the_first_record_that_was_tampered_with(
    engine: AsyncEngine, tampering: str
) -> None:
    for number in range(5):
        await record(engine, "client.ban", number=number)
    async with session_factory(engine)() as session, session.begin():
        if tampering == "edit":
            await session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(actor="mallory"))
        elif tampering == "edit_details":
            await session.execute(
                update(AuditRecord).where(AuditRecord.seq == 3).values(details={"number": 9})
            )
        elif tampering == "delete":
            await session.execute(delete(AuditRecord).where(AuditRecord.seq == 3))
        elif tampering == "swap":  # two records' contents exchanged, each hash kept with its row
            rows = {row.seq: row for row in (await session.scalars(select(AuditRecord))).all()}
            rows[3].details, rows[4].details = rows[4].details, rows[3].details
        else:
            await session.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    intact, _, bad_seq = await check(engine)
    assert not intact
    assert bad_seq == (4 if tampering in ("delete", "truncate") else 3)


def test_gatewayd_audit_verify_reports_an_intact_and_a_broken_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'echat.db'}"
    config = tmp_path / "gatewayd.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")

    async def prepare(edit: bool) -> None:
        await upgrade(url)
        engine = create_engine(url)
        try:
            if not edit:
                for action in ("auth.login", "account.lock"):
                    await record(engine, action)
            else:
                async with session_factory(engine)() as session, session.begin():
                    await session.execute(
                        update(AuditRecord).where(AuditRecord.seq == 1).values(source="10.0.0.9")
                    )
        finally:
            await engine.dispose()

    asyncio.run(prepare(edit=False))
    assert main(["audit", "verify", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "audit trail intact: 2 records, head 2 hash " in out
    asyncio.run(prepare(edit=True))
    assert main(["audit", "verify", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "audit trail BROKEN at record 1: its contents do not match its hash" in err


async def test_the_viewers_filters_and_pages_on_both_databases(engine: AsyncEngine) -> None:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    async with session_factory(engine)() as session, session.begin():
        for n in range(5):
            details = {"before": {"notes": None}, "after": {"notes": f"Ñandú {n} 100%"}}
            entry = AuditEntry("client.details", "Ana", 1, "10.0.0.1", f"client:C{n}", details)
            await append_audit(session, entry, now=moment + timedelta(hours=n))
        await append_audit(session, AuditEntry("account.lock", "cli", None, "cli", "account:12"), now=moment)
    async with read_session_factory(engine)() as session:

        async def numbers(wanted: AuditFilter, **page: int) -> list[int]:
            return [record.seq for record in await audit_page(session, wanted, limit=2, **page)]

        assert await numbers(AuditFilter()) == [6, 5]
        assert await numbers(AuditFilter(), before=5) == [4, 3]
        assert await numbers(AuditFilter(), after=2) == [4, 3]
        assert await numbers(AuditFilter(actor="ANA", text="ÑANDú 3")) == [4]
        assert await numbers(AuditFilter(text="100%"), before=3) == [2, 1]
        assert await numbers(AuditFilter(text="_")) == []
        assert await numbers(AuditFilter(subject="client")) == [5, 4]
        assert await numbers(AuditFilter(subject="account:12", source="cli")) == [6]
        since, until = moment + timedelta(hours=1), moment + timedelta(hours=3)
        assert await numbers(AuditFilter(since=since, until=until, action="client.details")) == [3, 2]
        assert await audit_has(session, AuditFilter(subject="client"), below=2, above=None)
        assert not await audit_has(session, AuditFilter(subject="client"), below=None, above=5)
        assert await audit_actions(session) == ["account.lock", "client.details"]
