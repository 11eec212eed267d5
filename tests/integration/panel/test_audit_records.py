"""Every action that exists leaves its audit record, in the action's own transaction, with the right
actor, source, subject and details: sign-in (and its failure), sign-out, the profile, the desk's
replies, pushes, closes, client notes and presence, and the ``gatewayd user`` commands (actor and
source ``cli``). No record holds a phone number, a password or its hash; the chain stays whole."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from gatewayd.schema import upgrade
from gatewayd.store.accounts import Role
from gatewayd.store.audit import AuditRecord, verify_audit
from gatewayd.store.engine import create_engine, read_session_factory
from gatewayd.store.messages import MTMessage
from panel.auth.admin import user_add, user_lock, user_passwd, user_pools, user_unlock

from .conftest import FAST_ARGON2, HTML, PASSWORD, PanelClient, Samples, login, page_csrf

NEW_PASSWORD = "a brand new passphrase"


async def records(client: PanelClient, after: int = 0) -> list[AuditRecord]:
    async with client.runtime.readers() as session:
        found = await session.scalars(
            select(AuditRecord).where(AuditRecord.seq > after).order_by(AuditRecord.seq)
        )
        return list(found.all())


def shape(record: AuditRecord) -> tuple[str, str, str | None, str | None, dict[str, Any]]:
    return record.action, record.actor, record.source, record.subject, record.details


async def test_sign_in_failure_success_and_sign_out_are_recorded(client: PanelClient) -> None:
    assert (await login(client, "Nobody", "whatever")).status_code == 401
    assert (await login(client, "oscar", "wrong password")).status_code == 401
    assert (await login(client, "oscar")).status_code == 303
    oscar = await client.account("oscar")
    token = await page_csrf(client, "/profile")
    assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
    found = await records(client)
    assert [shape(record) for record in found] == [
        ("auth.login_failed", "-", "127.0.0.1", None, {"username": "nobody", "outcome": "bad_credentials"}),
        (
            "auth.login_failed",
            "-",
            "127.0.0.1",
            f"account:{oscar.id}",
            {"username": "oscar", "outcome": "bad_credentials"},
        ),
        ("auth.login", "oscar", "127.0.0.1", f"account:{oscar.id}", {}),
        ("auth.logout", "oscar", "127.0.0.1", f"account:{oscar.id}", {}),
    ]
    assert [record.actor_id for record in found] == [None, None, oscar.id, oscar.id]
    assert "wrong password" not in json.dumps([record.details for record in found])


async def test_a_refused_attempt_without_hashing_writes_no_record(client: PanelClient) -> None:
    # Six failures from one address (each under a name of its own: no name is delayed), then the
    # address is rate limited for the window: refused before any hashing, and nothing is written.
    for n in range(6):
        assert (await login(client, f"guess{n}", "wrong password")).status_code == 401
    limited = await login(client, "oscar")
    assert limited.status_code == 429
    assert [record.action for record in await records(client)] == ["auth.login_failed"] * 6


async def test_profile_changes_are_recorded_before_and_after_without_secrets(client: PanelClient) -> None:
    await login(client, "ana")
    ana = await client.account("ana")
    start = (await records(client))[-1].seq
    token = await page_csrf(client, "/profile")
    saved = await client.post(
        "/profile/preferences",
        data={"csrf_token": token, "language": "en", "timezone": "America/Lima"},
    )
    assert saved.status_code == 303
    switched = await client.post("/language", data={"csrf_token": token, "language": "es"})
    assert switched.status_code == 303
    unchanged = await client.post("/language", data={"csrf_token": token, "language": "es"})
    assert unchanged.status_code == 303
    changed = await client.post(
        "/profile/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
        headers=HTML,
    )
    assert changed.status_code == 200
    subject = f"account:{ana.id}"
    assert [shape(record) for record in await records(client, start)] == [
        (
            "account.profile",
            "ana",
            "127.0.0.1",
            subject,
            {
                "before": {"language": "es", "timezone": "Europe/Madrid"},
                "after": {"language": "en", "timezone": "America/Lima"},
            },
        ),
        (
            "account.profile",
            "ana",
            "127.0.0.1",
            subject,
            {"before": {"language": "en"}, "after": {"language": "es"}},
        ),
        ("account.password", "ana", "127.0.0.1", subject, {"by": "self", "sessions_ended": 0}),
    ]
    stored = json.dumps([record.details for record in await records(client)])
    assert NEW_PASSWORD not in stored and PASSWORD not in stored and "argon2" not in stored


async def test_the_desks_actions_are_recorded_with_the_mt_ids_and_no_number(
    client: PanelClient, samples: Samples
) -> None:
    await login(client, "oscar")
    oscar = await client.account("oscar")
    start = (await records(client))[-1].seq
    conversation = f"conversation:{samples.conversation_id}"
    token = await page_csrf(client, "/desk")
    reply = await client.post(
        f"/desk/conversations/{samples.conversation_id}/reply", data={"csrf_token": token, "text": "hola"}
    )
    assert reply.status_code == 303
    details = await client.post(
        f"/desk/clients/{samples.client_id}/details",
        data={
            "csrf_token": token,
            "conversation_id": str(samples.conversation_id),
            "alias": "Pepe",
            "notes": "",
        },
    )
    assert details.status_code == 303
    same_again = await client.post(  # nothing changed: nothing recorded
        f"/desk/clients/{samples.client_id}/details",
        data={"csrf_token": token, "conversation_id": str(samples.conversation_id), "alias": "Pepe"},
    )
    assert same_again.status_code == 303
    push = await client.post(
        "/desk/push", data={"csrf_token": token, "client_id": samples.client_id, "text": "oferta"}
    )
    assert push.status_code == 303
    close = await client.post(
        f"/desk/conversations/{samples.conversation_id}/close", data={"csrf_token": token}
    )
    assert close.status_code == 303
    for presence in ("paused", "paused", "online"):
        response = await client.post("/desk/presence", data={"csrf_token": token, "presence": presence})
        assert response.status_code == 303
    async with client.runtime.readers() as session:
        mts = dict((await session.execute(select(MTMessage.kind, MTMessage.id).order_by(MTMessage.id))).all())
    found = await records(client, start)
    before_presence = found[-2].details["before"]
    assert [shape(record) for record in found] == [
        (
            "mt.sent",
            "oscar",
            "127.0.0.1",
            conversation,
            {"mt_ids": [mts["reply"]], "kind": "reply", "operator_id": oscar.id},
        ),
        (
            "client.details",
            "oscar",
            "127.0.0.1",
            f"client:{samples.client_id}",
            {"before": {"alias": None, "notes": None}, "after": {"alias": "Pepe", "notes": None}},
        ),
        (
            "mt.sent",
            "oscar",
            "127.0.0.1",
            f"client:{samples.client_id}",
            {"mt_ids": [mts["push"]], "kind": "push", "operator_id": oscar.id},
        ),
        ("conversation.close", "oscar", "127.0.0.1", conversation, {}),
        (
            "operator.presence",
            "oscar",
            "127.0.0.1",
            f"account:{oscar.id}",
            {"before": before_presence, "after": "paused"},
        ),
        (
            "operator.presence",
            "oscar",
            "127.0.0.1",
            f"account:{oscar.id}",
            {"before": "paused", "after": "online"},
        ),
    ]
    assert before_presence != "paused"
    every = await records(client)
    assert all(record.actor_id == oscar.id for record in found)
    assert samples.msisdn not in json.dumps([[r.subject, r.details] for r in every])
    async with client.runtime.readers() as session:
        assert (await verify_audit(session)).intact


async def test_the_user_commands_are_recorded_by_the_command_line(sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    account_id = await user_add(
        sqlite_url, "Lucia", Role.OPERATOR, PASSWORD, argon2=FAST_ARGON2, pools=["vip"]
    )
    await user_passwd(sqlite_url, "lucia", NEW_PASSWORD, argon2=FAST_ARGON2)
    await user_lock(sqlite_url, "lucia", "left the company")
    await user_unlock(sqlite_url, "lucia")
    assert await user_pools(sqlite_url, "lucia") == ["vip"]  # a look, no change: no record
    assert await user_pools(sqlite_url, "lucia", ["vip", "night"]) == ["night", "vip"]
    engine = create_engine(sqlite_url)
    try:
        async with read_session_factory(engine)() as session:
            found = list((await session.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())
            assert (await verify_audit(session)).intact
    finally:
        await engine.dispose()
    subject = f"account:{account_id}"
    assert [shape(record) for record in found] == [
        (
            "account.create",
            "cli",
            "cli",
            subject,
            {"after": {"username": "lucia", "role": "operator", "pools": ["vip"]}},
        ),
        ("account.password", "cli", "cli", subject, {"by": "cli", "sessions_ended": 0}),
        (
            "account.lock",
            "cli",
            "cli",
            subject,
            {
                "before": {"locked": False},
                "after": {"locked": True},
                "reason": "left the company",
                "sessions_ended": 0,
            },
        ),
        ("account.unlock", "cli", "cli", subject, {"before": {"locked": True}, "after": {"locked": False}}),
        (
            "account.pools",
            "cli",
            "cli",
            subject,
            {"before": {"pools": ["vip"]}, "after": {"pools": ["night", "vip"]}},
        ),
    ]
    assert all(record.actor_id is None for record in found)
    assert NEW_PASSWORD not in json.dumps([record.details for record in found])
