"""Production topology: the daemon and the panel as separate parts sharing only PostgreSQL and Mosquitto.

The MO reaches the panel as an MQTT event (which assigns it to the online operator), the operator's
reply is queued by the panel and announced over MQTT, and the daemon sends it to the carrier.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import select

from gatewayd.bus import EventBus, create_bus
from gatewayd.config import load_config
from gatewayd.schema import upgrade
from gatewayd.store.conversations import Conversation
from gatewayd.store.engine import create_engine, session_factory
from panel.app import create_app
from panel.settings import PanelSettings
from simulator import Simulator
from tests.e2e.stack import (
    CARRIER,
    FAST_ARGON2,
    OPERATOR,
    PASSWORD,
    SHORT_CODE,
    StackOptions,
    add_operator,
    desk_plugins,
    gateway_toml,
    running_daemon,
    serving,
    simulator_config,
)
from tests.waiting import eventually

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
SUBSCRIBER = "34600123987"


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    found = CSRF.search((await client.get(path, headers={"accept": "text/html"})).text)
    assert found is not None, f"no CSRF token on {path}"
    return found.group(1)


async def test_daemon_and_panel_talk_only_through_postgresql_and_mqtt(
    pg_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    await upgrade(pg_url)
    async with Simulator(simulator_config(receipt_delay=0.2)) as simulator:
        toml = gateway_toml(pg_url, simulator).replace(
            'url = "memory://"', f'url = "{mqtt_url}"\ntopic_prefix = "{topic_prefix}"'
        )
        config_path = tmp_path / "gatewayd.toml"
        config_path.write_text(toml, encoding="utf-8")
        config = load_config(config_path, environ={})
        assert config.bus.url.startswith("mqtt://")

        plugins = desk_plugins(StackOptions())  # the sweep is off: only the MQTT event can assign
        engine = create_engine(pg_url)
        sessions = session_factory(engine)
        await add_operator(sessions, plugins, capacity=5)

        def panel_bus(url: str) -> EventBus:
            return create_bus(url, topic_prefix=topic_prefix, client_id=f"{topic_prefix}-panel")

        settings = PanelSettings(
            database_url=pg_url, bus_url=mqtt_url, secure_cookies=False, argon2=FAST_ARGON2
        )
        app = create_app(settings, bus_factory=panel_bus, plugins=plugins)
        try:
            # A poll far longer than the test: only the panel's outbox event over MQTT can wake the sender.
            async with (
                running_daemon(config, poll_interval=300.0),
                serving(app) as panel_url,
                httpx.AsyncClient(base_url=panel_url, follow_redirects=False, timeout=10) as client,
            ):
                token = await csrf(client, "/login")
                login = await client.post(
                    "/login", data={"csrf_token": token, "username": OPERATOR, "password": PASSWORD}
                )
                assert login.status_code == 303
                token = await csrf(client, "/desk")
                online = await client.post("/desk/presence", data={"csrf_token": token, "presence": "online"})
                assert online.status_code == 303

                simulator.inject_mo(CARRIER, SUBSCRIBER, SHORT_CODE, "Hola, ¿alguien por ahí?")

                async def assigned_conversation() -> int | None:
                    async with sessions() as session:
                        return await session.scalar(
                            select(Conversation.id).where(Conversation.assigned_operator_id.is_not(None))
                        )

                async def is_assigned() -> bool:
                    return await assigned_conversation() is not None

                await eventually(is_assigned, what="the MO event over MQTT assigned the conversation")
                conversation_id = await assigned_conversation()

                token = await csrf(client, f"/desk?c={conversation_id}")
                sent = await client.post(
                    f"/desk/conversations/{conversation_id}/reply",
                    data={"csrf_token": token, "text": "Sí, aquí estoy."},
                )
                assert sent.status_code == 303

                async def carrier_got_reply() -> bool:
                    records = simulator.store.query(carrier=CARRIER, destination=SUBSCRIBER)
                    return any("aquí estoy" in str(record.to_dict().get("text", "")) for record in records)

                await eventually(carrier_got_reply, what="the daemon sent the panel's reply to the carrier")
        finally:
            await engine.dispose()
