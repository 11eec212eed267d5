"""Plugins found through the `echat.plugins` entry-point group, the `gatewayd user` commands, and the
account tables on PostgreSQL."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from echat.cli import build_parser
from echat.users import handle_user_command
from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Account, Role, WebSession, get_account_by_username
from gatewayd.store.base import Base
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.auth.admin import UserCommandError, user_add, user_lock, user_passwd, user_unlock
from panel.auth.passwords import PasswordPolicy
from panel.auth.sessions import get_active_session
from panel.errors import PluginError
from panel.loader import load_plugins
from panel.settings import PanelSettings
from plugins import auth, home

from .conftest import EXAMPLE_PLUGINS, FAST_ARGON2, login, serving


def register_distribution(folder: Path, name: str, entry_points: str) -> None:
    """A minimal installed distribution: what `pip install` would leave for importlib.metadata."""
    dist_info = folder / f"{name}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[echat.plugins]\n{entry_points}\n")


@pytest.fixture
def notes_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_distribution(tmp_path / "site", "echat_notes_example", "notes = echat_notes:plugin")
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_the_entry_point_group_finds_the_example_plugin(notes_distribution: None) -> None:
    names = [plugin.name for plugin in load_plugins()]
    assert "notes" in names


async def test_an_app_assembled_from_entry_points_serves_the_plugin(
    notes_distribution: None, sqlite_url: str
) -> None:
    engine = create_engine(sqlite_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()
    import echat_notes

    settings = PanelSettings(database_url=sqlite_url, secure_cookies=False, argon2=FAST_ARGON2)
    async with serving(create_app(settings, bus=MemoryBus())) as client:
        assert (await client.get("/notes/about")).status_code == 200
        assert (await client.get("/static/notes/notes.css")).status_code == 200
        # the plugin's lifespan ran in the panel's and its state is reachable through the typed accessor
        assert echat_notes.NOTES.of(client.runtime).database_url == sqlite_url


def test_a_broken_entry_point_is_an_error_naming_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_distribution(
        tmp_path / "site", "echat_broken_example", "broken = no_such_module_for_echat:plugin"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError, match="cannot be imported") as raised:
        load_plugins()
    assert raised.value.plugin == "broken"


def test_an_entry_point_named_unlike_its_plugin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_distribution(tmp_path / "site", "echat_misnamed_example", "misnamed = plugins.auth:plugin")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError, match="differs from the plugin name 'auth'"):
        load_plugins()


async def _schema(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()


async def _load(url: str, username: str) -> Account:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            found = await get_account_by_username(session, username)
            assert found is not None
            return found
    finally:
        await engine.dispose()


async def test_cli_functions_add_change_lock_and_unlock(sqlite_url: str) -> None:
    await _schema(sqlite_url)
    account_id = await user_add(sqlite_url, " Maria ", "master", "first password!", "en", argon2=FAST_ARGON2)
    created = await _load(sqlite_url, "maria")
    assert created.id == account_id and created.role is Role.MASTER and created.language == "en"
    assert "panel.access" in created.permissions and "users.manage" not in created.permissions
    with pytest.raises(UserCommandError, match="already exists"):
        await user_add(sqlite_url, "maria", "operator", "another password", argon2=FAST_ARGON2)
    with pytest.raises(UserCommandError, match="at least 10 characters"):
        await user_add(sqlite_url, "pepe", "operator", "short", argon2=FAST_ARGON2)

    await user_passwd(sqlite_url, "maria", "second password!", argon2=FAST_ARGON2)
    policy = PasswordPolicy(FAST_ARGON2)
    assert policy.verify((await _load(sqlite_url, "maria")).password_hash, "second password!")
    with pytest.raises(UserCommandError, match="no account named"):
        await user_passwd(sqlite_url, "nobody", "second password!", argon2=FAST_ARGON2)

    assert await user_lock(sqlite_url, "maria", "holiday") == 0
    locked = await _load(sqlite_url, "maria")
    assert locked.locked and locked.lock_reason == "holiday"
    await user_unlock(sqlite_url, "maria")
    assert not (await _load(sqlite_url, "maria")).locked


async def test_cli_parsers_and_handler(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await _schema(sqlite_url)
    parser = build_parser()
    args = parser.parse_args(
        ["user", "add", "lucia", "--role", "operator", "--language", "en", "--password-stdin"]
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO("a good long password\n"))
    assert await handle_user_command(args, sqlite_url) == 0
    assert "account 'lucia' created" in capsys.readouterr().out
    assert (await _load(sqlite_url, "lucia")).role is Role.OPERATOR

    lock = parser.parse_args(["user", "lock", "lucia", "--reason", "audit"])
    assert await handle_user_command(lock, sqlite_url) == 0
    missing = parser.parse_args(["user", "unlock", "ghost"])
    assert await handle_user_command(missing, sqlite_url) == 1
    assert "no account named 'ghost'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["user", "add", "x", "--role", "emperor"])


async def test_accounts_and_sessions_on_postgresql(pg_url: str) -> None:
    await _schema(pg_url)
    await user_add(pg_url, "ana", "admin", "a good long password", argon2=FAST_ARGON2)
    settings = PanelSettings(database_url=pg_url, secure_cookies=False, argon2=FAST_ARGON2)
    async with serving(create_app(settings, bus=MemoryBus(), plugins=[auth.plugin, home.plugin])) as client:
        assert (await login(client, "ANA", "a good long password")).status_code == 303
        token = client.cookies["echat_session"]
    engine = create_engine(pg_url)
    try:
        async with session_factory(engine)() as session:
            found = await get_active_session(session, token, settings)
            assert found is not None and found[1].username == "ana"
            stored = (await session.execute(select(WebSession.id))).scalars().all()
            assert stored == [found[0].id] and token not in stored
    finally:
        await engine.dispose()
