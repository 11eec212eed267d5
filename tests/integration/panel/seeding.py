"""A fresh store with the accounts a panel test signs in as (the plugins' tests share it).

Each account is named with its role and explicit grants (None: the role's defaults, as the panel
gives them at creation); all share the test password and the fast argon2 cost, read the panel in
Spanish unless named in ``english``, and take ``limit`` conversations when given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from gatewayd.store import models
from gatewayd.store.accounts import Role
from gatewayd.store.engine import create_engine, session_factory
from panel.auth.accounts import create_account
from panel.auth.passwords import PasswordPolicy
from panel.auth.permissions import PermissionRegistry
from panel.settings import Argon2Params
from panel.types import Plugin

#: Who signs in, as (role, explicit grants or None for the role's defaults).
Accounts = Mapping[str, tuple[Role, list[str] | None]]


async def create_store_with_accounts(
    url: str,
    plugins: Sequence[Plugin],
    accounts: Accounts,
    *,
    password: str,
    argon2: Argon2Params,
    english: Collection[str] = (),
    limit: int | None = None,
) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(models.metadata.create_all)
        registry = PermissionRegistry.build(plugins)
        policy = PasswordPolicy(argon2)
        async with session_factory(engine)() as session, session.begin():
            for username, (role, permissions) in accounts.items():
                extra = {} if limit is None else {"max_open_conversations": limit}
                await create_account(
                    session,
                    policy,
                    registry,
                    username=username,
                    password=password,
                    role=role,
                    display_name=username.title(),
                    language="en" if username in english else "es",
                    permissions=permissions,
                    **extra,
                )
    finally:
        await engine.dispose()
