"""The desk stops cleanly: its assignment sweep ends with the panel even when the bus (the daemon's)
stays open, and open event streams end as soon as the server begins to stop."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import uvicorn

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Presence
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.webserver import listening_socket
from panel.app import create_app
from panel.runtime import StopSignal
from panel.serve import PanelServer
from panel.settings import PanelSettings
from panel.types import PluginStateMissing
from plugins import auth, home
from plugins.desk import build_plugin
from plugins.desk.service import assignment_service
from tests.waiting import eventually

from ..conftest import PASSWORD, serving
from .conftest import at_desk, deliver_mo, desk_app, desk_settings, holders, live_server, prepare_desk_store
from .test_desk_stream import csrf, events

SWEEP_TASK = "panel.desk.assignment.sweep_loop"


def sweep_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == SWEEP_TASK and not task.done()]


async def test_the_sweep_stops_with_the_panel_while_the_bus_stays_open(
    desk_panel_settings: PanelSettings,
) -> None:
    await prepare_desk_store(desk_panel_settings.database_url)
    async with MemoryBus() as bus:  # the daemon's bus: it outlives the panel
        async with (
            serving(desk_app(desk_panel_settings, desk_settings(sweep_interval=0.05), bus)) as client,
            at_desk(client, "olga", Presence.ONLINE),
        ):
            runtime = client.runtime
            assert len(sweep_tasks()) == 1
            olga = await client.account("olga")
            lost = await deliver_mo(runtime.sessionmaker, None, "34650000123", "sin evento")

            async def swept() -> bool:
                return (await holders(runtime.sessionmaker)).get(lost.conversation_id or 0) == olga.id

            await eventually(swept)  # the sweep runs while the panel does
        assert sweep_tasks() == []
        with pytest.raises(PluginStateMissing):
            assignment_service(runtime)
        async with bus.subscribe("echat/#") as still_open:
            await bus.publish("echat/panel/check", {"open": True})
            assert (await still_open.get()).payload["open"] is True


async def test_an_open_event_stream_ends_when_the_server_begins_to_stop(
    desk_panel_settings: PanelSettings,
) -> None:
    await prepare_desk_store(desk_panel_settings.database_url)
    sock = listening_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop_signal = StopSignal()
    async with MemoryBus() as bus:
        app = create_app(
            desk_panel_settings,
            bus=bus,
            stop_signal=stop_signal,
            plugins=[auth.plugin, home.plugin, build_plugin(desk_settings())],
        )
        # No graceful-shutdown timeout: only the stop signal can end the stream (heartbeat 15 s).
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=None
        )
        server = PanelServer(config, stop_signal)
        serving_task = asyncio.create_task(server.serve(sockets=[sock]), name="test.panel.server")
        try:
            async with asyncio.timeout(10):
                while True:
                    if server.started:
                        break
                    await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=url) as client:
                token = await csrf(client, "/login")
                login = {"csrf_token": token, "username": "olga", "password": PASSWORD}
                await client.post("/login", data=login)
                async with client.stream("GET", "/desk/events", timeout=30) as stream:
                    received = events(stream.aiter_lines())
                    assert (await anext(received))[0] == "ready"
                    server.should_exit = True
                    async with asyncio.timeout(10):  # a bound, far below the 15 s heartbeat
                        remaining = [name async for name, _ in received]
                    assert remaining == []
            async with asyncio.timeout(10):
                await serving_task
            assert stop_signal.stopping
        finally:
            server.should_exit = True
            if not serving_task.done():
                serving_task.cancel()
            await asyncio.gather(serving_task, return_exceptions=True)
            sock.close()


async def test_a_client_leaving_mid_stream_never_stalls_the_database(
    desk_panel_settings: PanelSettings,
) -> None:
    """A browser closing the desk while its stream loads: the server cancels the stream, and the
    database work it was doing must still finish (on SQLite a cut transaction keeps the write lock)."""
    await prepare_desk_store(desk_panel_settings.database_url)
    engine = create_engine(desk_panel_settings.database_url)
    try:
        async with (
            MemoryBus() as bus,
            live_server(desk_app(desk_panel_settings, desk_settings(), bus)) as server,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        ):
            token = await csrf(client, "/login")
            await client.post("/login", data={"csrf_token": token, "username": "olga", "password": PASSWORD})
            token = await csrf(client, "/desk")
            await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
            stored = await deliver_mo(session_factory(engine), bus, "34650000124", "hola")

            async def assigned() -> bool:
                return (await holders(session_factory(engine))).get(stored.conversation_id or 0) is not None

            await eventually(assigned)  # the stream now loads olga's conversation and MTs
            for attempt in range(20):
                async with client.stream("GET", "/desk/events") as stream:
                    assert stream.status_code == 200  # closed at once, before the first event
                form = {
                    "csrf_token": token,
                    "alias": f"Pepe {attempt}",
                    "conversation_id": str(stored.conversation_id),
                }
                saved = await client.post(f"/desk/clients/{stored.subscriber.client_id}/details", data=form)
                assert saved.status_code == 303
    finally:
        await engine.dispose()
