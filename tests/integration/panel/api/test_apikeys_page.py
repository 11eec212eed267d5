"""The admin page of API keys (/admin/api-keys), on SQLite and on PostgreSQL: a key made is shown once
and works on the API at once, bad values are a 400 with the reason in the page, a revoked key is
refused on its next request; each change audited with the admin as actor."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.store.accounts import Role
from gatewayd.store.apikeys import APIKey
from gatewayd.store.audit import AuditRecord
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.auth.accounts import create_account
from panel.auth.permissions import PANEL_ACCESS
from panel.settings import PanelSettings
from plugins.apikeys.permissions import APIKEYS_MANAGE
from plugins.desk.permissions import PUSH_SEND

from ..conftest import (
    BUILT_IN_PLUGINS,
    FAST_ARGON2,
    HTML,
    PASSWORD,
    PanelClient,
    login,
    memory_bus,
    page_csrf,
    prepare_store,
    serving,
)
from .conftest import outbox_settings

pytestmark = pytest.mark.integration

TOKEN = re.compile(r'id="new-token"[^>]*value="(ek_[0-9a-f]{12}_[A-Za-z0-9_-]{43})"')


async def _panel(url: str) -> Starlette:
    """The panel with every built-in plugin on a store with the test accounts."""
    await prepare_store(url)
    settings = PanelSettings(
        database_url=url, secure_cookies=False, argon2=FAST_ARGON2, outbox=outbox_settings()
    )
    return create_app(settings, bus_factory=memory_bus, plugins=[*BUILT_IN_PLUGINS, "echat_notes:plugin"])


@pytest.fixture
async def admin(api_database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    async with serving(await _panel(api_database_url)) as client:
        assert (await login(client, "ana")).status_code == 303
        yield client


async def test_a_key_is_shown_once_works_and_is_revoked(admin: PanelClient) -> None:
    csrf = await page_csrf(admin, "/admin/api-keys")
    made = await admin.post(
        "/admin/api-keys",
        data={
            "name": "crm",
            "scope": ["send", "read"],
            "allow": "10.0.0.0/8\n127.0.0.1",
            "rate": "20",
            "csrf_token": csrf,
        },
        headers=HTML,
    )
    assert made.status_code == 201, made.text
    found = TOKEN.search(made.text)
    assert found is not None
    token = found.group(1)
    listed = await admin.get("/admin/api-keys", headers=HTML)
    assert token not in listed.text and token.split("_", 2)[2] not in listed.text
    assert "crm" in listed.text and "10.0.0.0/8, 127.0.0.1/32" in listed.text
    # revoking cannot be undone: the browser asks first (panel.js, data-confirm)
    assert 'data-confirm="¿Revocar la clave crm? Quien la use queda rechazado' in listed.text

    auth = {"authorization": f"Bearer {token}"}
    assert (await admin.get("/api/v1/messages/1", headers=auth)).status_code == 404  # the key works

    async with admin.runtime.readers() as session:
        key = await session.scalar(select(APIKey).where(APIKey.name == "crm"))
    assert key is not None and key.scopes == ["read", "send"] and key.rate == 20 and key.created_by == "ana"
    revoked = await admin.post(f"/admin/api-keys/{key.id}/revoke", data={"csrf_token": csrf}, headers=HTML)
    assert revoked.status_code == 303
    assert (await admin.get("/api/v1/messages/1", headers=auth)).status_code == 401
    again = await admin.post(f"/admin/api-keys/{key.id}/revoke", data={"csrf_token": csrf}, headers=HTML)
    assert again.status_code == 404

    async with admin.runtime.readers() as session:
        records = (
            await session.scalars(select(AuditRecord).where(AuditRecord.subject == f"apikey:{key.public_id}"))
        ).all()
    assert [(record.action, record.actor) for record in records] == [
        ("apikey.create", "ana"),
        ("apikey.revoke", "ana"),
    ]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "scope": "send"}, "Give the key a name"),
        ({"name": "crm"}, "Choose at least one scope"),
        ({"name": "crm", "scope": "root"}, "Choose at least one scope"),
        ({"name": "crm", "scope": "send", "allow": "10.0.0.300"}, "must be an IP address or a network"),
        ({"name": "crm", "scope": "send", "rate": "fast"}, "number of requests a second"),
        ({"name": "crm", "scope": "send", "rate": "1e9"}, "number of requests a second"),
        ({"name": "crm", "scope": "send", "rate": "nan"}, "number of requests a second"),
        ({"name": "crm", "scope": "send", "rate": "5e-324"}, "number of requests a second"),
        ({"name": "crm", "scope": "send", "rate": "0.0009"}, "number of requests a second"),
    ],
)
async def test_bad_values_are_a_400_with_the_reason(
    admin: PanelClient, form: dict[str, str], message: str
) -> None:
    csrf = await page_csrf(admin, "/admin/api-keys")
    await admin.post("/language", data={"language": "en", "next": "/", "csrf_token": csrf}, headers=HTML)
    refused = await admin.post("/admin/api-keys", data={**form, "csrf_token": csrf}, headers=HTML)
    assert refused.status_code == 400 and message in refused.text
    async with admin.runtime.readers() as session:
        assert await session.scalar(select(APIKey.id)) is None


@pytest.fixture
async def keeper(api_database_url: str, example_on_path: None) -> AsyncIterator[PanelClient]:
    """Signed in as "kim", who may make keys and send push SMS, and holds no other power."""
    async with serving(await _panel(api_database_url)) as client:
        engine = create_engine(api_database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                await create_account(
                    session,
                    client.runtime.passwords,
                    client.runtime.permissions,
                    username="kim",
                    password=PASSWORD,
                    role=Role.MASTER,
                    language="en",
                    permissions=[PANEL_ACCESS, APIKEYS_MANAGE, PUSH_SEND],
                )
        finally:
            await engine.dispose()
        assert (await login(client, "kim")).status_code == 303
        yield client


@pytest.mark.parametrize(
    "scopes", [["send", "admin"], ["msisdn"], ["read"], ["send", "read", "admin", "msisdn"]]
)
async def test_a_key_gets_no_scope_beyond_its_makers_powers(keeper: PanelClient, scopes: list[str]) -> None:
    csrf = await page_csrf(keeper, "/admin/api-keys")
    refused = await keeper.post(
        "/admin/api-keys", data={"name": "crm", "scope": scopes, "csrf_token": csrf}, headers=HTML
    )
    assert refused.status_code == 403 and "only the scopes whose powers you hold" in refused.text
    async with keeper.runtime.readers() as session:
        assert await session.scalar(select(APIKey.id)) is None
    made = await keeper.post(
        "/admin/api-keys", data={"name": "crm", "scope": "send", "csrf_token": csrf}, headers=HTML
    )
    assert made.status_code == 201 and TOKEN.search(made.text)
