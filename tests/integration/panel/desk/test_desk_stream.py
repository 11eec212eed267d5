"""The desk's server-sent events against a real server: assigned, new MO, MT status, sign-out."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.engine import create_engine, session_factory
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
                await bus.publish(
                    bus.topics.mt_status(int(str(queued["id"]))),
                    {"id": queued["id"], "status": "delivered", "previous": "accepted"},
                )
                name, delivered = await anext(received)
                assert (name, delivered["status"], delivered["final"]) == ("mt", "delivered", True)
                await client.post("/logout", data={"csrf_token": token})
                remaining = [name async for name, _ in received]
                assert remaining == ["signout"]  # and the stream ended
    finally:
        await engine.dispose()
