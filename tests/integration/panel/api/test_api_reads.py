"""Reading through the API, on SQLite and on PostgreSQL: MOs, conversations and clients a page at a
time (cursors, filters, the MSISDN only with its scope), a client by client ID, and the client actions
(opt-out, opt-in, ban, unban: the recipient rule follows at once, each change audited with the key)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gatewayd.store.apikeys import Scope
from gatewayd.store.audit import AuditRecord

from ..conftest import PanelClient
from .conftest import BANNED, FREE, OPTED_OUT, MakeKey, seed_subscribers
from .test_api_send import assert_problem, bearer

pytestmark = pytest.mark.integration


async def all_pages(api: PanelClient, path: str, token: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await api.get(path, params=query, headers=bearer(token))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_lists_page_newest_first_and_filter(api: PanelClient, make_key: MakeKey) -> None:
    ids = await seed_subscribers(api.runtime.settings.database_url)
    reader = await make_key(Scope.READ)
    mos = await all_pages(api, "/api/v1/mos", reader, limit="2")
    assert len(mos) == 3 and [mo["id"] for mo in mos] == sorted((mo["id"] for mo in mos), reverse=True)
    assert all(mo["msisdn"] is None and mo["text"] == "hola" for mo in mos)
    first = await api.get("/api/v1/mos", params={"limit": "2"}, headers=bearer(reader))
    assert len(first.json()["items"]) == 2 and first.json()["next_cursor"]

    only = await all_pages(api, "/api/v1/mos", reader, client_id=ids[FREE].lower())
    assert [mo["client_id"] for mo in only] == [ids[FREE]]
    assert await all_pages(api, "/api/v1/mos", reader, short_code="795500") == []
    assert await all_pages(api, "/api/v1/mos", reader, since="2100-01-01T00:00:00Z") == []
    # Any zone, compared in UTC; the extremes that still have a UTC form are accepted.
    assert len(await all_pages(api, "/api/v1/mos", reader, since="2000-01-01T10:00:00+14:00")) == 3
    assert len(await all_pages(api, "/api/v1/mos", reader, until="9999-12-31T23:59:59+14:00")) == 3
    assert await all_pages(api, "/api/v1/mos", reader, until="0001-01-01T00:00:00-14:00") == []

    conversations = await all_pages(api, "/api/v1/conversations", reader, status="waiting", limit="1")
    assert {item["client_id"] for item in conversations} <= set(ids.values())

    banned = await all_pages(api, "/api/v1/clients", reader, status="banned")
    assert [client["client_id"] for client in banned] == [ids[BANNED]]
    active = await all_pages(api, "/api/v1/clients", reader, status="active")
    assert [client["client_id"] for client in active] == [ids[FREE]]

    seer = await make_key(Scope.READ, Scope.MSISDN)
    numbers = await all_pages(api, "/api/v1/clients", seer)
    assert {client["msisdn"] for client in numbers} == {FREE, OPTED_OUT, BANNED}
    one = await api.get(f"/api/v1/clients/{ids[OPTED_OUT]}", headers=bearer(seer))
    assert one.json()["opted_out"] is True and one.json()["msisdn"] == OPTED_OUT


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"cursor": "not-a-cursor"},
        {"cursor": "djE6LTE"},  # "v1:-1"
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no zone
        {"until": "2026-01-01"},
        {"until": "9999-12-31T23:59:59-14:00"},  # past year 9999 in UTC
        {"since": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"until": "55255807"},  # Unix seconds: the document says ISO 8601 (schemathesis found it)
        {"since": "-1"},
        {"status": "asleep"},
        {"unknown": "1"},
        {"limit": ["1", "2"]},
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/clients", "/api/v1/mos", "/api/v1/conversations"])
async def test_bad_query_parameters_are_problems(
    api: PanelClient, make_key: MakeKey, params: Any, path: str
) -> None:
    reader = await make_key(Scope.READ)
    body = assert_problem(await api.get(path, params=params, headers=bearer(reader)), 422, "invalid-request")
    assert body["errors"]


async def test_client_actions_change_the_rule_at_once_and_are_audited(
    api: PanelClient, make_key: MakeKey
) -> None:
    ids = await seed_subscribers(api.runtime.settings.database_url)
    client = ids[FREE]
    admin = await make_key(Scope.ADMIN, Scope.SEND)
    reader = await make_key(Scope.READ)
    assert_problem(
        await api.post(f"/api/v1/clients/{client}/opt-out", headers=bearer(reader)), 403, "missing-scope"
    )

    out = await api.post(f"/api/v1/clients/{client}/opt-out", headers=bearer(admin))
    assert out.status_code == 200 and out.json()["opted_out"] is True
    refused = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=bearer(admin))
    assert assert_problem(refused, 422, "refused")["reason"] == "opted_out"
    back = await api.post(f"/api/v1/clients/{client}/opt-in", headers=bearer(admin))
    assert back.json()["opted_out"] is False

    banned = await api.post(f"/api/v1/clients/{client}/ban", json={"reason": "abuse"}, headers=bearer(admin))
    assert banned.status_code == 200 and banned.json()["banned_reason"] == "abuse"
    refused = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=bearer(admin))
    assert assert_problem(refused, 422, "refused")["reason"] == "banned"
    unbanned = await api.post(f"/api/v1/clients/{client}/unban", headers=bearer(admin))
    assert unbanned.json()["banned"] is False
    sent = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=bearer(admin))
    assert sent.status_code == 201

    # Asking again for what already is changes nothing and records nothing.
    assert (await api.post(f"/api/v1/clients/{client}/unban", headers=bearer(admin))).status_code == 200
    assert_problem(
        await api.post("/api/v1/clients/C00000000/ban", json={"reason": "x"}, headers=bearer(admin)),
        404,
        "not-found",
    )
    assert_problem(
        await api.post(f"/api/v1/clients/{client}/ban", json={}, headers=bearer(admin)),
        422,
        "invalid-request",
    )

    async with api.runtime.readers() as session:
        records = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.subject == f"client:{client}").order_by(AuditRecord.seq)
            )
        ).all()
    assert [record.action for record in records] == [
        "client.opt_out",
        "client.opt_in",
        "client.ban",
        "client.unban",
    ]
    assert all(record.actor.startswith("apikey:") and record.details["key"] == "crm" for record in records)


@pytest.mark.parametrize(
    "path", ["/api/v1/clients/a%00b", "/api/v1/clients/%ED%A0%80", "/api/v1/mos?client_id=a%00b"]
)
async def test_text_no_column_can_hold_is_a_problem_not_a_500(
    api: PanelClient, make_key: MakeKey, path: str
) -> None:
    reader = await make_key(Scope.READ, Scope.ADMIN)
    answer = await api.get(path, headers=bearer(reader))
    assert answer.status_code in (404, 422), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    posted = await api.post("/api/v1/clients/a%00b/opt-out", headers=bearer(reader))
    assert posted.status_code == 404 and posted.headers["content-type"].startswith("application/problem+json")
