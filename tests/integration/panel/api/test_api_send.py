"""The integrator API through the panel app, on SQLite and on PostgreSQL: keys (401 for none, a wrong
or a revoked one at once, 403 without the scope or from an address off the allow-list, 429 with
Retry-After over the rate), sending (one, a batch with refusals, Idempotency-Key sequential and
concurrent), reading an MT, problems for bad input, and the audit record of each send."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from gatewayd.store.apikeys import (
    IDEMPOTENCY_KEPT,
    APIIdempotency,
    APIKey,
    Scope,
    create_key,
    parse_token,
    remember,
    revoke_key,
)
from gatewayd.store.audit import AuditRecord
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.messages import MTMessage
from panel.api.operations import MAX_BODY
from panel.api.problems import MAX_LISTED_ERRORS
from panel.api.sweep import idempotency_sweep_loop
from tests.waiting import eventually

from ..conftest import PanelClient, serving
from .conftest import BANNED, FREE, OPTED_OUT, MakeKey, seed_subscribers

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


async def mt_count(api: PanelClient) -> int:
    async with api.runtime.readers() as session:
        return int(await session.scalar(select(func.count()).select_from(MTMessage)) or 0)


def assert_problem(response: object, status: int, kind: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].endswith("#" + kind), body
    assert isinstance(body, dict)
    return body


async def test_send_one_is_queued_read_back_and_audited_with_the_key_as_actor(
    api: PanelClient, make_key: MakeKey
) -> None:
    await seed_subscribers(api.runtime.settings.database_url)
    token = await make_key()
    sent = await api.post(
        "/api/v1/messages", json={"to": "+" + FREE, "text": "Hola desde {host}"}, headers=bearer(token)
    )
    assert sent.status_code == 201, sent.text
    mt_id = sent.json()["id"]

    read = await api.get(f"/api/v1/messages/{mt_id}", headers=bearer(token))
    assert read.status_code == 200
    body = read.json()
    assert body["text"] == "Hola desde 997745"  # the variables rendered by the outbox
    assert body["to"] == FREE and body["client_id"] and body["status"] == "queued" and body["parts"] == []

    async with api.runtime.readers() as session:
        record = await session.scalar(select(AuditRecord).where(AuditRecord.action == "api.send"))
    assert record is not None
    assert record.actor.startswith("apikey:") and record.subject == f"mt:{mt_id}"
    assert record.details["mt_ids"] == [mt_id] and record.source == "10.1.2.3"


async def test_without_the_msisdn_scope_the_number_is_hidden_and_each_call_is_logged(
    api: PanelClient, make_key: MakeKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = await make_key(Scope.SEND, Scope.READ)
    seer = await make_key(Scope.READ, Scope.MSISDN)
    caplog.set_level(logging.INFO, logger="panel.api")
    sent = await api.post(
        "/api/v1/messages", json={"to": FREE, "text": "hola {telefono}"}, headers=bearer(token)
    )
    mt_id = sent.json()["id"]
    async with api.runtime.sessionmaker() as session:  # an error that quotes the destination
        mt = await session.get(MTMessage, mt_id)
        assert mt is not None
        mt.last_error = f"submit to {FREE} refused"
        await session.commit()
    read = await api.get(f"/api/v1/messages/{mt_id}", headers=bearer(token))
    hidden = "\u2022" * len(FREE)
    assert read.json()["to"] is None
    assert (
        read.json()["text"] == f"hola {hidden}" and read.json()["last_error"] == f"submit to {hidden} refused"
    )
    shown = (await api.get(f"/api/v1/messages/{mt_id}", headers=bearer(seer))).json()
    assert shown["to"] == FREE and shown["text"] == f"hola {FREE}" and FREE in shown["last_error"]
    caplog.clear()
    await api.get(f"/api/v1/messages/{mt_id}", headers=bearer(token))
    await api.get("/api/v1/messages/1")
    calls = [record.echat_fields for record in caplog.records if record.getMessage() == "api.call"]  # type: ignore[attr-defined]
    public_id = token.split("_")[1]
    assert [(call["operation"], call["key"], call["status"]) for call in calls] == [
        ("get_message", public_id, 200),
        ("get_message", None, 401),
    ]


async def test_a_batch_answers_each_item_with_its_id_or_its_refusal(
    api: PanelClient, make_key: MakeKey
) -> None:
    await seed_subscribers(api.runtime.settings.database_url)
    token = await make_key(Scope.SEND)
    items = [
        {"to": FREE, "text": "uno"},
        {"to": OPTED_OUT, "text": "dos"},
        {"to": BANNED, "text": "tres"},
        {"to": "not a number", "text": "cuatro"},
        {"to": FREE, "text": "emoji 😀 " * 200},
        {"to": "+447700900123", "text": "no UK carrier"},
        {"to": FREE, "text": "cinco", "carrier": "movistar", "source": "997745"},
        {"to": FREE, "text": "another service's number", "source": "795500"},
    ]
    response = await api.post("/api/v1/messages/batch", json={"items": items}, headers=bearer(token))
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["queued"] == 2 and body["refused"] == 6
    outcomes = [(item["index"], item["status"], item.get("reason")) for item in body["items"]]
    assert outcomes == [
        (0, "queued", None),
        (1, "refused", "opted_out"),
        (2, "refused", "banned"),
        (3, "refused", "invalid_number"),
        (4, "refused", "too_long"),
        (5, "refused", "no_route"),
        (6, "queued", None),
        (7, "refused", "no_route"),
    ]
    assert "795500 is not one of carrier movistar's" in body["items"][7]["detail"]
    assert await mt_count(api) == 2


async def test_a_refused_single_send_is_a_problem_with_its_reason(
    api: PanelClient, make_key: MakeKey
) -> None:
    await seed_subscribers(api.runtime.settings.database_url)
    token = await make_key(Scope.SEND)
    response = await api.post("/api/v1/messages", json={"to": OPTED_OUT, "text": "x"}, headers=bearer(token))
    assert assert_problem(response, 422, "refused")["reason"] == "opted_out"


async def test_a_repeated_idempotency_key_sends_once_and_replays_the_answer(
    api: PanelClient, make_key: MakeKey
) -> None:
    token = await make_key(Scope.SEND)
    batch = {"items": [{"to": FREE, "text": f"mensaje {n}"} for n in range(5)]}
    headers = bearer(token, **{"idempotency-key": "order-42"})
    first = await api.post("/api/v1/messages/batch", json=batch, headers=headers)
    # The same body written differently is the same request.
    again = await api.post(
        "/api/v1/messages/batch",
        content=json.dumps(batch, indent=2),
        headers={**headers, "content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await mt_count(api) == 5

    other = await api.post("/api/v1/messages/batch", json={"items": batch["items"][:1]}, headers=headers)
    assert_problem(other, 422, "idempotency-key-reused")
    # Another key's Idempotency-Key of the same name is its own.
    second_key = await make_key(Scope.SEND, name="erp")
    theirs = await api.post(
        "/api/v1/messages/batch", json=batch, headers=bearer(second_key, **{"idempotency-key": "order-42"})
    )
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert await mt_count(api) == 10


async def test_an_answer_that_sent_nothing_is_not_kept(api: PanelClient, make_key: MakeKey) -> None:
    """A refusal depends on what may change (here the carrier's short codes): its retry is tried anew."""
    token = await make_key(Scope.SEND)
    headers = bearer(token, **{"idempotency-key": "order-7"})
    message = {"to": FREE, "text": "hola", "source": "795500"}
    refused = await api.post("/api/v1/messages", json=message, headers=headers)
    assert_problem(refused, 422, "refused")
    async with api.runtime.readers() as session:
        assert await session.scalar(select(func.count()).select_from(APIIdempotency)) == 0
    again = await api.post("/api/v1/messages", json=message, headers=headers)
    assert_problem(again, 422, "refused")
    assert "idempotent-replayed" not in again.headers
    batch = {"items": [message, {"to": FREE, "text": "hola"}]}
    partial = await api.post(
        "/api/v1/messages/batch", json=batch, headers=bearer(token, **{"idempotency-key": "b"})
    )
    replayed = await api.post(
        "/api/v1/messages/batch", json=batch, headers=bearer(token, **{"idempotency-key": "b"})
    )
    assert (
        partial.status_code == replayed.status_code == 207
        and replayed.headers["idempotent-replayed"] == "true"
    )
    assert await mt_count(api) == 1


async def test_concurrent_requests_with_one_idempotency_key_send_once(
    api: PanelClient, make_key: MakeKey
) -> None:
    token = await make_key(Scope.SEND)
    batch = {"items": [{"to": FREE, "text": f"mensaje {n}"} for n in range(20)]}
    headers = bearer(token, **{"idempotency-key": "same-moment"})
    answers = await asyncio.gather(
        *(api.post("/api/v1/messages/batch", json=batch, headers=headers) for _ in range(6))
    )
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.text for answer in answers}) == 1
    assert sum(1 for answer in answers if "idempotent-replayed" not in answer.headers) == 1
    assert await mt_count(api) == 20


async def test_keys_are_checked_revoked_keys_stop_at_once(api: PanelClient, make_key: MakeKey) -> None:
    no_key = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"})
    assert_problem(no_key, 401, "unauthorized")
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    token = await make_key(Scope.READ)
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(await api.get("/api/v1/messages/1", headers=bearer(wrong)), 401, "unauthorized")
    assert_problem(await api.get("/api/v1/messages/1", headers=bearer("garbage")), 401, "unauthorized")

    refused = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=bearer(token))
    assert "'send'" in str(assert_problem(refused, 403, "missing-scope")["detail"])
    assert await mt_count(api) == 0

    assert_problem(await api.get("/api/v1/messages/999", headers=bearer(token)), 404, "not-found")
    async with api.runtime.sessionmaker() as session, session.begin():
        parsed = parse_token(token)
        assert parsed is not None
        key_id = await session.scalar(select(APIKey.id).where(APIKey.public_id == parsed[0]))
        assert key_id is not None
        assert await revoke_key(session, key_id, utcnow()) is not None
    assert_problem(await api.get("/api/v1/messages/999", headers=bearer(token)), 401, "unauthorized")


async def test_the_allow_list_and_the_rate(api: PanelClient, make_key: MakeKey) -> None:
    elsewhere = await make_key(Scope.READ, allow=("192.168.0.0/16",))
    assert_problem(await api.get("/api/v1/messages/1", headers=bearer(elsewhere)), 403, "forbidden-address")
    here = await make_key(Scope.READ, allow=("192.168.0.0/16", "10.0.0.0/8"))
    assert (await api.get("/api/v1/messages/1", headers=bearer(here))).status_code == 404

    # One request every 100 s, a bucket of one: the second is over the rate however fast the machine.
    slow = await make_key(Scope.READ, rate=0.01)
    assert (await api.get("/api/v1/messages/1", headers=bearer(slow))).status_code == 404
    limited = await api.get("/api/v1/messages/1", headers=bearer(slow))
    assert_problem(limited, 429, "rate-limited")
    assert 90 <= int(limited.headers["retry-after"]) <= 100


@pytest.mark.parametrize(
    ("content", "content_type", "status", "kind"),
    [
        (b"{not json", "application/json", 400, "invalid-json"),
        (b'{"to": "34600000003"}', "application/json", 422, "invalid-request"),
        (b'{"to": "34600000003", "text": "x", "extra": 1}', "application/json", 422, "invalid-request"),
        (b'{"to": 34600000003, "text": "x"}', "application/json", 422, "invalid-request"),
        (b"[]", "application/json", 422, "invalid-request"),
        (b"to=1&text=x", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
        (b"\xff\xfe", "application/json", 400, "invalid-json"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "invalid-json", id="deep"),
        pytest.param(
            b'{"to": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            "application/json",
            400,
            "invalid-json",
            id="deep-field",
        ),
        (b'{"to": "34600000003", "text": "a\\u0000b"}', "application/json", 422, "invalid-request"),
        (b'{"to": "34600000003", "text": "a\\ud800b"}', "application/json", 422, "invalid-request"),
        pytest.param(
            b'{"to": "34600000001", "to": "34600000003", "text": "x"}',
            "application/json",
            400,
            "invalid-json",
            id="repeated-key",
        ),
        pytest.param(
            b'{"to": "34600000003", "text": "x", "\\ud800": 1}',
            "application/json",
            422,
            "invalid-request",
            id="lone-surrogate-key",
        ),
    ],
)
async def test_bad_bodies_are_problems(
    api: PanelClient, make_key: MakeKey, content: bytes, content_type: str, status: int, kind: str
) -> None:
    token = await make_key(Scope.SEND)
    response = await api.post(
        "/api/v1/messages", content=content, headers=bearer(token, **{"content-type": content_type})
    )
    body = assert_problem(response, status, kind)
    if status == 422:
        assert body["errors"] and all(error["loc"][0] == "body" for error in body["errors"])  # type: ignore[index,union-attr]


async def test_a_repeated_key_is_refused_wherever_it_is(api: PanelClient, make_key: MakeKey) -> None:
    """Not the last one silently winning: which number was meant is the sender's to say."""
    await seed_subscribers(api.runtime.settings.database_url)
    token = await make_key(Scope.SEND)
    headers = bearer(token, **{"content-type": "application/json"})
    for content in (
        b'{"to": "34600000001", "text": "x", "to": "34600000003"}',
        b'{"items": [{"to": "34600000003", "text": "x", "text": "y"}]}',
        b'{"items": [{"to": "34600000003", "text": "x"}], "items": []}',
    ):
        path = "/api/v1/messages/batch" if content.startswith(b'{"items"') else "/api/v1/messages"
        body = assert_problem(await api.post(path, content=content, headers=headers), 400, "invalid-json")
        assert "repeats the key" in str(body["detail"])
    assert await mt_count(api) == 0


async def test_a_lone_surrogate_key_is_a_422_problem(api: PanelClient, make_key: MakeKey) -> None:
    """Wherever the key is (pydantic may echo it in ``loc``), the answer is the usual problem."""
    token = await make_key(Scope.SEND)
    headers = bearer(token, **{"content-type": "application/json"})
    for path, content in (
        ("/api/v1/messages", b'{"to": "34600000003", "text": "x", "\\ud800": 1}'),
        ("/api/v1/messages/batch", b'{"items": [{"to": "34600000003", "text": "x", "\\udc00": 1}]}'),
    ):
        body = assert_problem(await api.post(path, content=content, headers=headers), 422, "invalid-request")
        assert all(error["loc"][0] == "body" for error in body["errors"])  # type: ignore[index,union-attr]
    assert await mt_count(api) == 0


async def test_only_a_batch_takes_a_large_body(api: PanelClient, make_key: MakeKey) -> None:
    token = await make_key(Scope.SEND, Scope.ADMIN)
    headers = bearer(token, **{"content-type": "application/json"})
    padded = b'{"to": "34600000003", "text": "x"' + b" " * MAX_BODY + b"}"
    problem = assert_problem(
        await api.post("/api/v1/messages", content=padded, headers=headers), 413, "too-large"
    )
    assert problem["detail"] == f"The body is over {MAX_BODY} bytes."
    batch = b'{"items": [{"to": "34600000003", "text": "x"}]' + b" " * MAX_BODY + b"}"
    assert (await api.post("/api/v1/messages/batch", content=batch, headers=headers)).status_code == 201
    assert_problem(
        await api.post("/api/v1/clients/C1/ban", content=padded, headers=headers), 413, "too-large"
    )


async def test_a_problem_lists_the_first_errors_only(api: PanelClient, make_key: MakeKey) -> None:
    """One error per unknown key: a body of them would otherwise make an answer many times its size."""
    token = await make_key(Scope.SEND)
    unknown = {f"k{index}": 1 for index in range(3000)}
    for path, content in (
        ("/api/v1/messages", {"to": FREE, "text": "x", **unknown}),
        ("/api/v1/messages/batch", {"items": [{"to": FREE, "text": "x"}], **unknown}),
    ):
        body = assert_problem(
            await api.post(path, json=content, headers=bearer(token)), 422, "invalid-request"
        )
        assert [error["loc"] for error in body["errors"]] == [  # type: ignore[union-attr,index]
            ["body", f"k{index}"] for index in range(MAX_LISTED_ERRORS)
        ]
        assert body["more_errors"] == len(unknown) - MAX_LISTED_ERRORS
    assert await mt_count(api) == 0


async def test_limits_and_unknown_routes_are_problems(api: PanelClient, make_key: MakeKey) -> None:
    token = await make_key(Scope.SEND)
    too_many = {"items": [{"to": FREE, "text": "x"}] * 1001}
    assert_problem(
        await api.post("/api/v1/messages/batch", json=too_many, headers=bearer(token)), 422, "invalid-request"
    )
    huge = b'{"to": "1", "text": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    assert_problem(
        await api.post(
            "/api/v1/messages", content=huge, headers=bearer(token, **{"content-type": "application/json"})
        ),
        413,
        "too-large",
    )
    bad_key = bearer(token, **{"idempotency-key": "x" * 200})
    assert_problem(
        await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=bad_key),
        400,
        "invalid-idempotency-key",
    )
    assert_problem(await api.get("/api/v1/nothing"), 404, "not-found")
    # A newline in the path: the API's mount does not take it, the answer is still a problem.
    assert_problem(await api.get("/api/v1/clients/a%0Ab", headers=bearer(token)), 404, "not-found")
    wrong_method = await api.delete("/api/v1/messages")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert wrong_method.headers["allow"] == "POST"
    assert await mt_count(api) == 0


async def test_kept_answers_are_forgotten_after_a_day(api_app: Starlette, api_database_url: str) -> None:
    """The panel's lifespan sweeps at start (then hourly): an answer older than a day is forgotten, so
    its Idempotency-Key sends again; a fresh one is kept."""
    engine = create_engine(api_database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            made = await create_key(
                session, name="crm", scopes=[Scope.SEND], allow=[], rate=None, created_by="test", now=utcnow()
            )
            for name, at in (
                ("old", utcnow() - IDEMPOTENCY_KEPT - timedelta(minutes=1)),
                ("fresh", utcnow()),
            ):
                await remember(
                    session,
                    key_id=made.key.id,
                    idempotency_key=name,
                    request_sha256="x",
                    status=201,
                    response={},
                    now=at,
                )
    finally:
        await engine.dispose()
    async with serving(api_app) as api:

        async def only_the_fresh_one_is_kept() -> bool:
            async with api.runtime.readers() as session:
                return set((await session.scalars(select(APIIdempotency.idempotency_key))).all()) == {"fresh"}

        await eventually(only_the_fresh_one_is_kept)
        again = await api.post(
            "/api/v1/messages",
            json={"to": FREE, "text": "x"},
            headers=bearer(made.token, **{"idempotency-key": "old"}),
        )
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers


async def test_an_answer_older_than_a_day_is_not_replayed_before_the_sweep(
    api: PanelClient, make_key: MakeKey
) -> None:
    """The sweep ran when the panel started and runs hourly: the look-up itself ignores the stale
    answer (and deletes it, so the new one takes its key)."""
    await seed_subscribers(api.runtime.settings.database_url)
    token = await make_key(Scope.SEND)
    public_id, _ = parse_token(token) or ("", "")
    async with api.runtime.sessionmaker() as session, session.begin():
        key_id = await session.scalar(select(APIKey.id).where(APIKey.public_id == public_id))
        assert key_id is not None
        await remember(
            session,
            key_id=key_id,
            idempotency_key="order-1",
            request_sha256="another request's",
            status=201,
            response={"id": 1, "status": "queued", "not_before": None},
            now=utcnow() - IDEMPOTENCY_KEPT - timedelta(minutes=1),
        )
    headers = bearer(token, **{"idempotency-key": "order-1"})
    sent = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=headers)
    assert sent.status_code == 201 and "idempotent-replayed" not in sent.headers, sent.text
    again = await api.post("/api/v1/messages", json={"to": FREE, "text": "x"}, headers=headers)
    assert again.json() == sent.json() and again.headers["idempotent-replayed"] == "true"
    assert await mt_count(api) == 1


async def test_only_the_api_root_is_the_api(api: PanelClient) -> None:
    """/api/nope is a panel path like any other: the panel's 404 page and its CSRF check, not a problem."""
    page = await api.get("/api/nope", headers={"accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in page.headers
    posted = await api.post("/api/nope", json={})
    assert posted.status_code == 403 and not posted.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("client_host", "allowed"),
    [("::ffff:10.1.2.3", True), ("::ffff:192.0.2.1", False), ("2001:db8::1", True), ("2001:db9::1", False)],
)
async def test_the_allow_list_on_a_dual_stack_listener(
    api_app: Starlette, client_host: str, allowed: bool
) -> None:
    """An IPv4 client reaching a dual-stack listener has a mapped address (::ffff:a.b.c.d): it is checked
    as the IPv4 address the allow-list names."""
    async with serving(api_app, client_host=client_host) as client:
        async with client.runtime.sessionmaker() as session, session.begin():
            made = await create_key(
                session,
                name="crm",
                scopes=[Scope.READ],
                allow=["10.0.0.0/8", "2001:db8::/32"],
                rate=None,
                created_by="test",
                now=utcnow(),
            )
        answer = await client.get("/api/v1/messages/1", headers=bearer(made.token))
    if allowed:
        assert_problem(answer, 404, "not-found")
    else:
        assert_problem(answer, 403, "forbidden-address")


async def test_the_sweep_ends_by_itself_when_the_panel_stops(api: PanelClient) -> None:
    """Stopping waits for the sweep's statement under way instead of cutting it (a SQLite connection
    cut mid-statement would leave its worker thread to a loop that is gone)."""
    sweep = asyncio.get_running_loop().create_task(idempotency_sweep_loop(api.runtime))
    await asyncio.sleep(0)  # its first sweep under way
    api.runtime.stopping.begin()
    async with asyncio.timeout(10):
        await sweep
    assert not sweep.cancelled()
