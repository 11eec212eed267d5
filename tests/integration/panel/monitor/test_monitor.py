"""The live monitor through the panel (/admin/monitor): live conversations coloured by state with the
operators' strip, its filters (bad ones answered 400), reassignment of one or many conversations
to an operator or back to the queue (audited, refused when the operator is away or full, 403 without
the power), and its event stream delivering a row on a new MO and the move of a reassignment."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy import insert, select, update

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Presence
from gatewayd.store.audit import AuditRecord, verify_audit
from gatewayd.store.base import utcnow
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import ConversationStatus
from gatewayd.store.repo_mo import IngestedMO
from gatewayd.store.subscribers import Subscriber

from ..conftest import HTML, PASSWORD, PanelClient, login, page_csrf
from ..desk.conftest import at_desk, deliver_mo, holders, live_server
from .conftest import monitor_app, monitor_settings, prepare_monitor_store

ROW = re.compile(r'<tr id="conversation-(\d+)" class="state-(\w+)"')


def rows(page: str) -> dict[int, str]:
    """{conversation id: state} of the rows on the page."""
    return {int(found.group(1)): found.group(2) for found in ROW.finditer(page)}


async def three_conversations(client: PanelClient) -> list[IngestedMO]:
    """Three clients who wrote once each; no event published (nobody is handed them)."""
    return [
        await deliver_mo(client.runtime.sessionmaker, None, f"3465000000{n}", f"hola {n}") for n in (1, 2, 3)
    ]


async def hand(client: PanelClient, conversation_id: int, username: str | None, **values: object) -> None:
    """Puts a conversation where a test wants it (as the daemon's assignment and the desk would)."""
    holder = (await client.account(username)).id if username else None
    async with client.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(assigned_operator_id=holder, **values)
        )


async def reassign(client: PanelClient, ids: list[int], operator: str, back: str = "") -> httpx.Response:
    token = await page_csrf(client, "/admin/monitor")
    form = {"csrf_token": token, "operator": operator, "conversation": [str(i) for i in ids], "back": back}
    return await client.post("/admin/monitor/reassign", data=form, headers=HTML)


async def reassign_records(client: PanelClient) -> list[AuditRecord]:
    async with client.runtime.sessionmaker() as session:
        found = select(AuditRecord).where(AuditRecord.action == "conversation.reassign")
        return list((await session.execute(found.order_by(AuditRecord.seq))).scalars())


async def test_the_monitor_colours_live_conversations_and_shows_the_strip(
    monitor_client: PanelClient,
) -> None:
    waiting, assigned, answered = await three_conversations(monitor_client)
    closed = await deliver_mo(monitor_client.runtime.sessionmaker, None, "34650000009", "adiós")
    late = utcnow() - timedelta(seconds=90)  # the service "chat" allows 60 s; unknown services 120 s
    await hand(monitor_client, assigned.conversation_id or 0, "olga")
    await hand(monitor_client, answered.conversation_id or 0, "olga", status=ConversationStatus.OPEN)
    await hand(monitor_client, closed.conversation_id or 0, None, status=ConversationStatus.CLOSED)
    await hand(monitor_client, waiting.conversation_id or 0, None, waiting_since=late)
    async with at_desk(monitor_client, "olga", Presence.PAUSED):
        assert (await login(monitor_client, "marta")).status_code == 303
        page = await monitor_client.get("/admin/monitor", headers=HTML)
    assert page.status_code == 200
    # no service is routed in these tests: the default threshold (120 s) applies, 90 s is not overdue
    assert rows(page.text) == {
        waiting.conversation_id: "waiting",
        assigned.conversation_id: "assigned",
        answered.conversation_id: "answered",
    }
    assert "34650000001" not in page.text  # the monitor shows client ids, never numbers
    assert waiting.subscriber.client_id in page.text
    strip = re.findall(
        r'presence-(\w+)" data-account-id="\d+">\s*<span class="name">(\w+)</span>.*?'
        r'class="load">(\d+/\d+)<',
        page.text,
        re.DOTALL,
    )
    assert ("paused", "Olga", "2/2") in strip and ("offline", "Otto", "0/2") in strip
    assert 'id="count-total">3<' in page.text and 'id="count-assigned">1<' in page.text

    # past its service's threshold a waiting conversation is overdue
    async with monitor_client.runtime.sessionmaker() as session, session.begin():
        ids = [waiting.conversation_id, assigned.conversation_id]
        stmt = update(Conversation).where(Conversation.id.in_(ids))
        await session.execute(stmt.values(waiting_since=utcnow() - timedelta(seconds=200)))
    page = await monitor_client.get("/admin/monitor", headers=HTML)
    states = rows(page.text)
    assert states[waiting.conversation_id or 0] == states[assigned.conversation_id or 0] == "overdue"


async def test_the_filters_narrow_the_rows_and_bad_ones_are_refused(monitor_client: PanelClient) -> None:
    first, second, third = await three_conversations(monitor_client)
    await hand(monitor_client, second.conversation_id or 0, "olga")
    await hand(monitor_client, third.conversation_id or 0, "otto", status=ConversationStatus.OPEN)
    olga = await monitor_client.account("olga")
    assert (await login(monitor_client, "ana")).status_code == 303

    async def shown(query: str) -> set[int]:
        page = await monitor_client.get(f"/admin/monitor?{query}", headers=HTML)
        assert page.status_code == 200, query
        return set(rows(page.text))

    everything = {first.conversation_id, second.conversation_id, third.conversation_id}
    assert await shown("") == everything
    assert await shown("operator=queue") == {first.conversation_id}
    assert await shown(f"operator={olga.id}") == {second.conversation_id}
    assert await shown("state=answered") == {third.conversation_id}
    assert await shown("state=assigned&short_code=997745") == {second.conversation_id}
    assert await shown("short_code=795500") == set()
    assert await shown("carrier=movistar") == everything
    assert await shown("carrier=vodafone&state=") == set()
    for bad in (
        "state=closed",
        "operator=olga",
        "operator=-1",
        "short_code=12",
        "service=%3Cscript%3E",
        "carrier=" + "x" * 40,
    ):
        page = await monitor_client.get(f"/admin/monitor?{bad}", headers=HTML)
        assert page.status_code == 400, bad
        assert 'class="flash error"' in page.text and "<script>" not in page.text
    refused = await monitor_client.get("/admin/monitor/events?state=closed", headers=HTML)
    assert refused.status_code == 400


async def test_a_master_reassigns_one_and_many_with_audit(monitor_client: PanelClient) -> None:
    first, second, third = await three_conversations(monitor_client)
    for stored in (first, second, third):
        await hand(monitor_client, stored.conversation_id or 0, "otto")
    olga = await monitor_client.account("olga")
    otto = await monitor_client.account("otto")
    marta = await monitor_client.account("marta")
    async with at_desk(monitor_client, "olga", Presence.ONLINE):
        assert (await login(monitor_client, "marta")).status_code == 303
        page = await monitor_client.get("/admin/monitor", headers=HTML)
        assert f'<option value="{olga.id}">Olga (0/2)</option>' in page.text
        assert f'<option value="{otto.id}">Otto (' not in page.text  # not at the desk: not offered

        moved = await reassign(monitor_client, [first.conversation_id or 0], str(olga.id))
        assert moved.status_code == 303 and moved.headers["location"] == "/admin/monitor?moved=1"
        held = await holders(monitor_client.runtime.sessionmaker)
        assert held[first.conversation_id or 0] == olga.id and held[second.conversation_id or 0] == otto.id
        (record,) = await reassign_records(monitor_client)
        assert (record.subject, record.actor, record.actor_id) == (
            f"conversation:{first.conversation_id}",
            "marta",
            marta.id,
        )
        assert record.details == {"before": {"operator_id": otto.id}, "after": {"operator_id": olga.id}}

        # olga has room for one more: two are refused whole, nothing moves
        too_many = [second.conversation_id or 0, third.conversation_id or 0]
        full = await reassign(monitor_client, too_many, str(olga.id))
        assert full.status_code == 409 and 'class="flash error"' in full.text
        assert (await holders(monitor_client.runtime.sessionmaker))[second.conversation_id or 0] == otto.id
        away = await reassign(monitor_client, too_many, str(otto.id))  # otto is not at the desk
        assert away.status_code == 409
        assert len(await reassign_records(monitor_client)) == 1

    # back to the queue, many at once (olga has left: nobody takes them meanwhile)
    all_three = [first.conversation_id or 0, second.conversation_id or 0, third.conversation_id or 0]
    queued = await reassign(monitor_client, all_three, "queue", back="state=assigned&operator=queue&x=1")
    assert queued.status_code == 303  # back to the page's filters
    assert queued.headers["location"] == "/admin/monitor?operator=queue&state=assigned&moved=3"
    held = await holders(monitor_client.runtime.sessionmaker)
    assert [held[i] for i in all_three] == [None, None, None]
    records = await reassign_records(monitor_client)
    assert [r.details["after"] for r in records[1:]] == [{"operator_id": None}] * 3
    page = await monitor_client.get("/admin/monitor?moved=3", headers=HTML)
    assert "Conversaciones reasignadas: 3" in page.text
    odd = await monitor_client.get("/admin/monitor?moved=%C2%B2", headers=HTML)  # "²": isdigit, not int
    assert odd.status_code == 200 and "Conversaciones reasignadas" not in odd.text
    async with monitor_client.runtime.sessionmaker() as session:
        assert (await verify_audit(session)).intact


async def test_bad_reassignments_are_refused_with_a_message(monitor_client: PanelClient) -> None:
    (first, *_) = await three_conversations(monitor_client)
    assert (await login(monitor_client, "ana")).status_code == 303
    for ids, operator in (
        ([], "queue"),
        ([first.conversation_id or 0], "olga"),
        ([first.conversation_id or 0], ""),
    ):
        refused = await reassign(monitor_client, ids, operator)
        assert refused.status_code == 400, (ids, operator)
        assert 'class="flash error"' in refused.text
    token = await page_csrf(monitor_client, "/admin/monitor")
    junk = {"csrf_token": token, "operator": "queue", "conversation": "1; DROP TABLE"}
    assert (await monitor_client.post("/admin/monitor/reassign", data=junk, headers=HTML)).status_code == 400
    joined = ",".join(str(n) for n in range(1, 502))  # as the page's script sends the ticked rows
    many = {"csrf_token": token, "operator": "queue", "conversations": joined}
    response = await monitor_client.post("/admin/monitor/reassign", data=many, headers=HTML)
    assert response.status_code == 400 and "500" in response.text
    nobody = await monitor_client.account("nico")
    unknown = await reassign(monitor_client, [first.conversation_id or 0], str(nobody.id + 1000))
    assert unknown.status_code == 409
    assert await reassign_records(monitor_client) == []


async def test_without_the_power_the_monitor_is_refused(monitor_client: PanelClient) -> None:
    (first, *_) = await three_conversations(monitor_client)
    for who in ("nico", "olga"):
        assert (await login(monitor_client, who)).status_code == 303
        assert (await monitor_client.get("/admin/monitor", headers=HTML)).status_code == 403
        assert (await monitor_client.get("/admin/monitor/events", headers=HTML)).status_code == 403
        token = await page_csrf(monitor_client, "/profile")
        form = {"csrf_token": token, "operator": "queue", "conversation": str(first.conversation_id)}
        response = await monitor_client.post("/admin/monitor/reassign", data=form, headers=HTML)
        assert response.status_code == 403
        assert (await monitor_client.post("/logout", data={"csrf_token": token})).status_code == 303
    assert await reassign_records(monitor_client) == []


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, object]]]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def next_rows(received: AsyncIterator[tuple[str, dict[str, object]]]) -> dict[str, object]:
    async for name, data in received:
        if name == "rows":
            return data
    raise AssertionError("the stream ended")


@asynccontextmanager
async def signed_in(url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url) as browser:
        token = await page_csrf(browser, "/login")
        form = {"csrf_token": token, "username": username, "password": PASSWORD}
        assert (await browser.post("/login", data=form)).status_code == 303
        yield browser


async def test_the_stream_delivers_a_row_on_an_mo_and_drops_it_when_handed_out(sqlite_url: str) -> None:
    await prepare_monitor_store(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        async with (
            MemoryBus() as bus,
            live_server(monitor_app(monitor_settings(sqlite_url), bus)) as server,
            signed_in(server.url, "marta") as browser,
            signed_in(server.url, "olga") as olga,
            browser.stream("GET", "/admin/monitor/events?operator=queue", timeout=10) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = events(stream.aiter_lines())
            assert (await anext(received))[0] == "ready"
            stored = await deliver_mo(session_factory(engine), bus, "34650000007", "hola")
            data = await next_rows(received)
            (row,) = data["rows"]  # type: ignore[misc]
            assert row["i"] == stored.conversation_id and row["x"] == "waiting"
            assert row["l"] == stored.subscriber.client_id and row["c"] == "997745"
            assert row["k"] == "movistar" and row["o"] is None and row["w"]
            assert "34650000007" not in json.dumps(data)
            # olga comes online and is handed it: it leaves this view (filtered on the queue)
            token = await page_csrf(olga, "/desk")
            chosen = await olga.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
            assert chosen.status_code == 303
            data = await next_rows(received)
            assert data == {"rows": [], "gone": [stored.conversation_id]}
    finally:
        await engine.dispose()


async def test_the_counts_are_grouped_as_the_readers_language_groups_them(
    monitor_client: PanelClient,
) -> None:
    now = utcnow()
    async with monitor_client.runtime.sessionmaker() as session, session.begin():
        subscribers = await session.execute(
            insert(Subscriber).returning(Subscriber.id),
            [
                {"client_id": f"C{n:07d}", "msisdn": f"3466{n:07d}", "first_seen": now, "last_seen": now}
                for n in range(1_234)
            ],
        )
        await session.execute(
            insert(Conversation),
            [
                {
                    "subscriber_id": subscriber_id,
                    "short_code": "997745",
                    "opened_at": now,
                    "waiting_since": now,
                }
                for subscriber_id in subscribers.scalars()
            ],
        )
    assert (await login(monitor_client, "ana")).status_code == 303  # English
    page = await monitor_client.get("/admin/monitor", headers=HTML)
    assert 'id="count-total">1,234<' in page.text and 'id="count-waiting">1,234<' in page.text
    assert 'data-group=","' in page.text  # what the page's script groups the live counts with
    token = await page_csrf(monitor_client, "/admin/monitor")
    assert (await monitor_client.post("/logout", data={"csrf_token": token})).status_code == 303
    assert (await login(monitor_client, "marta")).status_code == 303  # Spanish
    page = await monitor_client.get("/admin/monitor", headers=HTML)
    assert 'id="count-total">1.234<' in page.text and 'id="count-waiting">1.234<' in page.text
    assert 'data-group="."' in page.text
