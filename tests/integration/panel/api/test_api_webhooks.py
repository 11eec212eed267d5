"""Webhook subscriptions through the API (issue 14), on SQLite and on PostgreSQL, with the panel's rules:
the secret in the 201 answer only, never in a read; the admin scope; a private URL refused with a clear
problem (names unique: 409); a partial change; rotation; a dead delivery redelivered (409 when not dead);
deliveries paged by cursor and filtered by state; deletion; each change audited with the key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.apikeys import Scope
from gatewayd.store.audit import AuditRecord
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery, WebhookSubscription
from panel.app import create_app
from panel.settings import PanelSettings
from plugins import auth

from ..conftest import FAST_ARGON2, PanelClient, serving
from ..seeding import create_store_with_accounts
from .conftest import MakeKey, outbox_settings
from .test_api_send import assert_problem, bearer

pytestmark = pytest.mark.integration

RECEIVER = "http://127.0.0.1:9999/hooks"
VALID = {"name": "crm", "url": RECEIVER, "events": ["mo.received", "client.opt_out"]}


@pytest.fixture
async def hooks_api(api_database_url: str) -> AsyncIterator[PanelClient]:
    """The API with the test receiver's address allow-listed (``[webhooks] allow``)."""
    await create_store_with_accounts(
        api_database_url, [auth.plugin], {}, password="x" * 20, argon2=FAST_ARGON2
    )
    settings = PanelSettings(
        database_url=api_database_url,
        secure_cookies=False,
        argon2=FAST_ARGON2,
        outbox=outbox_settings(),
        webhooks_allow=("127.0.0.1:9999",),
    )
    app: Starlette = create_app(settings, bus=MemoryBus(), plugins=[auth.plugin])
    async with serving(app, client_host="10.1.2.3") as client:
        yield client


@pytest.fixture
def api(hooks_api: PanelClient) -> PanelClient:
    """``make_key`` (conftest) makes its keys through this client."""
    return hooks_api


async def audit_actions(client: PanelClient) -> list[AuditRecord]:
    async with client.runtime.readers() as session:
        statement = (
            select(AuditRecord).where(AuditRecord.action.startswith("webhook.")).order_by(AuditRecord.seq)
        )
        return list((await session.scalars(statement)).all())


async def stored(client: PanelClient) -> list[WebhookSubscription]:
    async with client.runtime.readers() as session:
        return list((await session.scalars(select(WebhookSubscription))).all())


async def add_deliveries(client: PanelClient, subscription_id: int, states: list[DeliveryState]) -> list[int]:
    now = datetime.now(UTC)
    async with client.runtime.sessionmaker() as session, session.begin():
        rows = [
            WebhookDelivery(
                subscription_id=subscription_id,
                event="mo.received",
                ordering_key=f"client{index}",
                payload="{}",
                state=state.value,
                attempts=12 if state is DeliveryState.DEAD else 0,
                next_attempt_at=now,
                last_status=500 if state is DeliveryState.DEAD else None,
                last_error="HTTP 500" if state is DeliveryState.DEAD else None,
                created_at=now,
            )
            for index, state in enumerate(states)
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def test_create_shows_the_secret_once_and_each_change_is_audited_with_the_key(
    hooks_api: PanelClient, make_key: MakeKey
) -> None:
    token = await make_key(Scope.ADMIN)
    made = await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(token))
    assert made.status_code == 201, made.text
    body = made.json()
    (row,) = await stored(hooks_api)
    assert body["secret"] == row.secret and len(row.secret) == 64
    assert body["events"] == ["client.opt_out", "mo.received"] and body["active"] is True
    assert made.headers["location"] == f"/api/v1/webhooks/{row.id}"
    assert body["created_by"] == "apikey:" + token.split("_")[1]

    one = await hooks_api.get(f"/api/v1/webhooks/{row.id}", headers=bearer(token))
    listed = await hooks_api.get("/api/v1/webhooks", headers=bearer(token))
    for answer in (one, listed):
        assert answer.status_code == 200 and row.secret not in answer.text and "secret" not in answer.text
    assert [item["name"] for item in listed.json()["items"]] == ["crm"]

    taken = await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(token))
    assert_problem(taken, 409, "name-taken")

    changed = await hooks_api.patch(
        f"/api/v1/webhooks/{row.id}", json={"active": False, "events": ["mt.receipt"]}, headers=bearer(token)
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["url"]) == ("crm", RECEIVER)  # the rest kept
    assert changed.json()["active"] is False and changed.json()["events"] == ["mt.receipt"]

    rotated = await hooks_api.post(f"/api/v1/webhooks/{row.id}/secret", headers=bearer(token))
    assert rotated.status_code == 200
    (after,) = await stored(hooks_api)
    assert rotated.json()["secret"] == after.secret != row.secret and after.previous_secret == row.secret

    gone = await hooks_api.delete(f"/api/v1/webhooks/{row.id}", headers=bearer(token))
    assert gone.status_code == 204 and gone.content == b""
    assert await stored(hooks_api) == []
    assert_problem(await hooks_api.get(f"/api/v1/webhooks/{row.id}", headers=bearer(token)), 404, "not-found")
    assert_problem(
        await hooks_api.delete(f"/api/v1/webhooks/{row.id}", headers=bearer(token)), 404, "not-found"
    )

    records = await audit_actions(hooks_api)
    assert [record.action for record in records] == [
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
    ]
    assert all(record.actor.startswith("apikey:") and record.source == "10.1.2.3" for record in records)
    assert records[1].details["before"]["active"] is True and records[1].details["after"]["active"] is False
    assert all(row.secret not in str(record.details) for record in records)


async def test_a_key_without_the_admin_scope_is_refused(hooks_api: PanelClient, make_key: MakeKey) -> None:
    token = await make_key(Scope.SEND, Scope.READ, Scope.MSISDN)
    for method, path in (("GET", "/api/v1/webhooks"), ("POST", "/api/v1/webhooks")):
        answer = await hooks_api.request(method, path, json=VALID, headers=bearer(token))
        assert (
            assert_problem(answer, 403, "missing-scope")["detail"] == "The API key lacks the scope 'admin'."
        )
    assert await stored(hooks_api) == []


@pytest.mark.parametrize(
    ("change", "status", "field", "reason"),
    [
        ({"url": "http://10.0.0.7/"}, 422, "url", "not_public"),
        ({"url": "http://169.254.169.254/latest"}, 422, "url", "not_public"),
        ({"url": "ftp://crm.example.com/"}, 422, "url", "bad_url"),
        ({"url": "http://user:pw@crm.example.com/"}, 422, "url", "bad_url"),
        ({"url": "http://no-such-host.invalid/"}, 422, "url", "no_host"),
        ({"name": "   "}, 422, "name", "name"),
    ],
)
async def test_bad_subscriptions_are_refused_with_a_clear_problem(
    hooks_api: PanelClient, make_key: MakeKey, change: dict[str, str], status: int, field: str, reason: str
) -> None:
    token = await make_key(Scope.ADMIN)
    answer = await hooks_api.post("/api/v1/webhooks", json={**VALID, **change}, headers=bearer(token))
    problem = assert_problem(answer, status, "invalid-subscription")
    assert problem["reason"] == reason and problem["errors"] == [
        {"loc": ["body", field], "msg": problem["detail"], "type": reason}
    ]
    assert await stored(hooks_api) == [] and await audit_actions(hooks_api) == []


async def test_a_private_url_is_refused_on_change_too_and_the_msisdn_needs_its_scope(
    hooks_api: PanelClient, make_key: MakeKey
) -> None:
    admin = await make_key(Scope.ADMIN)
    made = (await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(admin))).json()
    path = f"/api/v1/webhooks/{made['id']}"
    refused = await hooks_api.patch(path, json={"url": "http://192.168.1.1/"}, headers=bearer(admin))
    assert "local, private or reserved" in str(assert_problem(refused, 422, "invalid-subscription")["detail"])
    assert (await stored(hooks_api))[0].url == RECEIVER

    for answer in (
        await hooks_api.patch(path, json={"include_msisdn": True}, headers=bearer(admin)),
        await hooks_api.post(
            "/api/v1/webhooks", json={**VALID, "name": "b", "include_msisdn": True}, headers=bearer(admin)
        ),
    ):
        assert_problem(answer, 403, "missing-scope")
    seer = await make_key(Scope.ADMIN, Scope.MSISDN)
    shown = await hooks_api.patch(path, json={"include_msisdn": True}, headers=bearer(seer))
    assert shown.status_code == 200 and shown.json()["include_msisdn"] is True
    unknown = await hooks_api.post(
        "/api/v1/webhooks", json={**VALID, "events": ["rm -rf"]}, headers=bearer(admin)
    )
    assert assert_problem(unknown, 422, "invalid-request")["errors"][0]["loc"][:2] == ["body", "events"]  # type: ignore[index]


async def test_deliveries_page_by_state_and_a_dead_one_is_redelivered(
    hooks_api: PanelClient, make_key: MakeKey
) -> None:
    token = await make_key(Scope.ADMIN)
    made = (await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(token))).json()
    path = f"/api/v1/webhooks/{made['id']}"
    dead1, delivered, dead2 = await add_deliveries(
        hooks_api, made["id"], [DeliveryState.DEAD, DeliveryState.DELIVERED, DeliveryState.DEAD]
    )

    first = await hooks_api.get(path + "/deliveries", params={"limit": "2"}, headers=bearer(token))
    assert first.status_code == 200, first.text
    assert [item["id"] for item in first.json()["items"]] == [dead2, delivered]
    cursor = first.json()["next_cursor"]
    rest = await hooks_api.get(
        path + "/deliveries", params={"limit": "2", "cursor": cursor}, headers=bearer(token)
    )
    assert [item["id"] for item in rest.json()["items"]] == [dead1] and rest.json()["next_cursor"] is None
    dead = await hooks_api.get(path + "/deliveries", params={"state": "dead"}, headers=bearer(token))
    assert [(item["id"], item["last_error"]) for item in dead.json()["items"]] == [
        (dead2, "HTTP 500"),
        (dead1, "HTTP 500"),
    ]

    again = await hooks_api.post(f"{path}/deliveries/{dead2}/redeliver", headers=bearer(token))
    assert again.status_code == 200 and again.json() == {"id": dead2, "state": "pending"}
    refused = await hooks_api.post(f"{path}/deliveries/{delivered}/redeliver", headers=bearer(token))
    assert_problem(refused, 409, "not-dead")
    missing = await hooks_api.post(f"{path}/deliveries/999999999/redeliver", headers=bearer(token))
    assert_problem(missing, 404, "not-found")
    dead = await hooks_api.get(path + "/deliveries", params={"state": "dead"}, headers=bearer(token))
    assert [item["id"] for item in dead.json()["items"]] == [dead1]
    pending = await hooks_api.get(path + "/deliveries", params={"state": "pending"}, headers=bearer(token))
    assert [(item["id"], item["attempts"]) for item in pending.json()["items"]] == [(dead2, 0)]
    (record,) = [record for record in await audit_actions(hooks_api) if record.action == "webhook.redeliver"]
    assert record.details["deliveries"] == dead2 and record.details["queued"] == 1

    other = await hooks_api.get("/api/v1/webhooks/999999999999999999/deliveries", headers=bearer(token))
    assert_problem(other, 404, "not-found")
    bad = await hooks_api.get(path + "/deliveries", params={"cursor": "nope"}, headers=bearer(token))
    assert_problem(bad, 422, "invalid-request")


async def test_a_key_without_msisdn_cannot_redirect_a_subscription_that_carries_the_msisdn(
    hooks_api: PanelClient, make_key: MakeKey
) -> None:
    """A key that may not see numbers must not point an MSISDN-carrying subscription at its own
    receiver (nor widen or wake it): any change that leaves ``include_msisdn`` on needs the scope."""
    seer = await make_key(Scope.ADMIN, Scope.MSISDN)
    made = await hooks_api.post(
        "/api/v1/webhooks", json={**VALID, "include_msisdn": True}, headers=bearer(seer)
    )
    assert made.status_code == 201, made.text
    path = f"/api/v1/webhooks/{made.json()['id']}"
    admin = await make_key(Scope.ADMIN)
    for change in (
        {"url": "http://127.0.0.1:9999/mine"},
        {"events": ["mo.received", "mt.receipt", "client.opt_out"]},
        {"active": True},
        {"name": "renamed"},
    ):
        assert_problem(await hooks_api.patch(path, json=change, headers=bearer(admin)), 403, "missing-scope")
    (row,) = await stored(hooks_api)
    assert (row.url, row.name, row.include_msisdn) == (RECEIVER, "crm", True)
    # turning the MSISDN off needs no scope: it shows less
    off = await hooks_api.patch(path, json={"include_msisdn": False}, headers=bearer(admin))
    assert off.status_code == 200 and off.json()["include_msisdn"] is False
    moved = await hooks_api.patch(path, json={"url": "http://127.0.0.1:9999/mine"}, headers=bearer(admin))
    assert moved.status_code == 200, moved.text


HOSTILE_BODIES: list[object] = [
    None,
    [],
    "crm",
    {},
    {**VALID, "name": ""},
    {**VALID, "name": "a\u0000b"},
    {**VALID, "name": "\ud800"},
    {**VALID, "name": "x" * 65},
    {**VALID, "name": 7},
    {**VALID, "url": ""},
    {**VALID, "url": "http://[::1/"},
    {**VALID, "url": "http://[::1]:99999/"},
    {**VALID, "url": "http://crm.example.com:0/"},
    {**VALID, "url": "http://" + "a" * 70 + ".example.com/"},
    {**VALID, "url": "http://exa mple.com/"},
    {**VALID, "url": "http://xn--/"},
    {**VALID, "url": "http://\u00e9\u0301..example/"},
    {**VALID, "url": "https://" + "a" * 1990},
    {**VALID, "url": "javascript:alert(1)"},
    {**VALID, "url": "http://0x7f.1/"},
    {**VALID, "url": "http://[::ffff:127.0.0.1]/"},
    {**VALID, "url": "http://localhost./"},
    {**VALID, "events": []},
    {**VALID, "events": "mo.received"},
    {**VALID, "events": ["mo.received"] * 9},
    {**VALID, "events": [None]},
    {**VALID, "active": "maybe"},
    {**VALID, "include_msisdn": [True]},
    {**VALID, "secret": "mine"},
    {**VALID, "id": 5},
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
async def test_hostile_bodies_get_a_problem_never_a_500_nor_a_row(
    hooks_api: PanelClient, make_key: MakeKey, body: object
) -> None:
    token = await make_key(Scope.ADMIN)
    # as a hostile client writes it: ASCII JSON, a lone surrogate as its \\u escape
    sent = {**bearer(token), "content-type": "application/json"}
    made = await hooks_api.post("/api/v1/webhooks", content=json.dumps(body), headers=sent)
    assert 400 <= made.status_code < 500, made.text
    assert made.headers["content-type"].startswith("application/problem+json")
    assert await stored(hooks_api) == []
    # the same fields as a change of an existing subscription
    good = await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(token))
    # only what differs from the valid subscription: the hostile part alone
    change = {k: v for k, v in body.items() if VALID.get(k, ...) != v} if isinstance(body, dict) else body
    if change == {}:
        return
    path = f"/api/v1/webhooks/{good.json()['id']}"
    changed = await hooks_api.patch(path, content=json.dumps(change), headers=sent)
    assert 400 <= changed.status_code < 500, changed.text
    (row,) = await stored(hooks_api)
    assert (row.url, row.events) == (RECEIVER, "client.opt_out,mo.received")


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "abc"},
        {"limit": "1e3"},
        {"state": "DEAD"},
        {"state": ""},
        {"cursor": ""},
        {"cursor": "x" * 65},
        {"cursor": "Y3Vyc29yOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
        {"other": "1"},
    ],
)
async def test_hostile_delivery_queries_get_a_problem(
    hooks_api: PanelClient, make_key: MakeKey, query: dict[str, str]
) -> None:
    token = await make_key(Scope.ADMIN)
    made = (await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(token))).json()
    answer = await hooks_api.get(
        f"/api/v1/webhooks/{made['id']}/deliveries", params=query, headers=bearer(token)
    )
    assert 400 <= answer.status_code < 500 or (answer.status_code == 200 and query == {"cursor": ""}), (
        answer.text
    )


async def test_a_delivery_ordered_by_a_number_hides_it_from_a_key_without_msisdn(
    hooks_api: PanelClient, make_key: MakeKey
) -> None:
    """An MT's event for a number that never wrote is ordered by that number (it has no client ID):
    the deliveries' list must not hand the MSISDN to a key that may not see numbers."""
    admin = await make_key(Scope.ADMIN)
    made = (await hooks_api.post("/api/v1/webhooks", json=VALID, headers=bearer(admin))).json()
    (client_delivery,) = await add_deliveries(hooks_api, made["id"], [DeliveryState.DELIVERED])
    async with hooks_api.runtime.sessionmaker() as session, session.begin():
        row = await session.get(WebhookDelivery, client_delivery)
        assert row is not None
        session.add(
            WebhookDelivery(
                subscription_id=made["id"],
                event="mt.status",
                ordering_key="34600111222",
                payload="{}",
                state=DeliveryState.DELIVERED.value,
                attempts=1,
                next_attempt_at=row.next_attempt_at,
                created_at=row.created_at,
            )
        )
    path = f"/api/v1/webhooks/{made['id']}/deliveries"
    hidden = await hooks_api.get(path, headers=bearer(admin))
    assert hidden.status_code == 200, hidden.text
    assert "34600111222" not in hidden.text
    assert [item["client_id"] for item in hidden.json()["items"]] == ["\u2022" * 11, "client0"]
    seer = await make_key(Scope.ADMIN, Scope.MSISDN)
    shown = await hooks_api.get(path, headers=bearer(seer))
    assert [item["client_id"] for item in shown.json()["items"]] == ["34600111222", "client0"]
