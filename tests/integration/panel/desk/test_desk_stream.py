"""The desk's server-sent events against a real server: assigned, new MO, MT status, sign-out."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import update

from gatewayd.bus.memory import MemoryBus
from gatewayd.events import mt_status_payload
from gatewayd.store.base import utcnow
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage
from panel.settings import PanelSettings

from ..conftest import PASSWORD
from .conftest import deliver_mo, desk_app, desk_settings, live_server, prepare_desk_store

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
MSISDN = "34660000001"


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, object]]]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    found = _CSRF.search((await client.get(path, headers={"accept": "text/html"})).text)
    assert found is not None
    return found.group(1)


async def test_the_stream_delivers_assignments_mos_statuses_and_ends_on_sign_out(
    desk_panel_settings: PanelSettings,
) -> None:
    await prepare_desk_store(desk_panel_settings.database_url)
    engine = create_engine(desk_panel_settings.database_url)
    sessions = session_factory(engine)
    try:
        async with (
            MemoryBus() as bus,
            live_server(desk_app(desk_panel_settings, desk_settings(heartbeat=0.2), bus)) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            token = await csrf(client, "/login")
            await client.post("/login", data={"csrf_token": token, "username": "olga", "password": PASSWORD})
            token = await csrf(client, "/desk")
            await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
            async with client.stream("GET", "/desk/events", timeout=10) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                received = events(stream.aiter_lines())
                assert (await anext(received))[0] == "ready"
                first = await deliver_mo(sessions, bus, MSISDN, "hola <b>")
                name, assigned = await anext(received)
                assert name == "assigned"
                assert assigned["conversation_id"] == first.conversation_id
                assert assigned["label"] == first.subscriber.client_id
                assert MSISDN not in json.dumps(assigned)
                await deliver_mo(sessions, bus, MSISDN, "¿sigues ahí?")
                name, mo = await anext(received)
                assert (name, mo["text"]) == ("mo", "¿sigues ahí?")
                assert mo["conversation_id"] == first.conversation_id
                replied = await client.post(
                    f"/desk/conversations/{first.conversation_id}/reply",
                    data={"csrf_token": token, "text": "sí"},
                )
                assert replied.status_code == 303
                name, queued = await anext(received)
                assert (name, queued["status"], queued["label"]) == ("mt", "queued", "En cola")
                mt_id = int(str(queued["id"]))
                async with sessions() as session, session.begin():  # as the daemon records a receipt
                    await session.execute(
                        update(MTMessage).where(MTMessage.id == mt_id).values(status=MTStatus.DELIVERED)
                    )
                await bus.publish(
                    bus.topics.mt_status(mt_id), mt_status_payload(mt_id, "delivered", None, None, utcnow())
                )
                name, delivered = await anext(received)
                assert (name, delivered["status"], delivered["final"]) == ("mt", "delivered", True)
                await client.post("/logout", data={"csrf_token": token})
                remaining = [name async for name, _ in received]
                assert remaining == ["signout"]  # and the stream ended
    finally:
        await engine.dispose()


async def test_the_desk_shows_what_the_database_holds_never_what_an_event_says(
    desk_panel_settings: PanelSettings,
) -> None:
    """Whoever can publish on the broker names rows at most: texts and statuses come from the database,
    and a conversation leaves the desk only when the database says it changed hands."""
    await prepare_desk_store(desk_panel_settings.database_url)
    engine = create_engine(desk_panel_settings.database_url)
    sessions = session_factory(engine)
    try:
        async with (
            MemoryBus() as bus,
            live_server(desk_app(desk_panel_settings, desk_settings(), bus)) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            token = await csrf(client, "/login")
            await client.post("/login", data={"csrf_token": token, "username": "olga", "password": PASSWORD})
            token = await csrf(client, "/desk")
            await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
            other = await deliver_mo(sessions, None, "34660000099", "de otra conversación")
            async with client.stream("GET", "/desk/events", timeout=10) as stream:
                received = events(stream.aiter_lines())
                assert (await anext(received))[0] == "ready"
                mine = await deliver_mo(sessions, bus, MSISDN, "hola")
                name, assigned = await anext(received)
                assert (name, assigned["conversation_id"]) == ("assigned", mine.conversation_id)
                conversation = mine.conversation_id
                replied = await client.post(
                    f"/desk/conversations/{conversation}/reply", data={"csrf_token": token, "text": "dime"}
                )
                assert replied.status_code == 303
                name, queued = await anext(received)
                assert (name, queued["status"]) == ("mt", "queued")
                mt_id = int(str(queued["id"]))

                forged_mo = {"id": 999_999, "conversation_id": conversation, "text": "llama al 806 000 000"}
                await bus.publish(bus.topics.mo("997745"), forged_mo)
                borrowed = {"id": other.mo_id, "conversation_id": conversation, "text": "borrowed"}
                await bus.publish(bus.topics.mo("997745"), borrowed)
                await bus.publish(bus.topics.mt_status(mt_id), {"id": mt_id, "status": "delivered"})
                await bus.publish(
                    bus.topics.conversation_assigned(conversation or 0),
                    {"conversation_id": conversation, "operator_id": 424242},
                )
                last = await deliver_mo(sessions, bus, MSISDN, "¿sigues?")  # a real one closes the test
                seen = []
                async for name, data in received:
                    seen.append((name, data))
                    if name == "mo":
                        break
    finally:
        await engine.dispose()
    # The forged MT event names a real MT of mine: the desk shows its status as stored (queued).
    assert seen == [
        ("mt", {"id": mt_id, "status": "queued", "label": "En cola", "final": False, "failure": ""}),
        ("mo", {**seen[-1][1], "id": last.mo_id, "conversation_id": conversation, "text": "¿sigues?"}),
    ]
