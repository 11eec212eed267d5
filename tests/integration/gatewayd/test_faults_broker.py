"""The MQTT broker goes away and comes back while MOs flow: SMPP traffic never waits for it, every
MO is stored, and events buffered during the outage reach subscribers once it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from gatewayd.bus import MQTTBus, create_bus
from simulator.core import Simulator
from tests.integration.gatewayd.faults import mo_ids, mo_texts, subscriber
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, make_config, running_daemon
from tests.integration.gatewayd.proxy import TCPProxy
from tests.waiting import eventually


async def test_broker_outage_blocks_nothing_and_loses_no_mo(
    tmp_path: Path, sqlite_url: str, simulator: Simulator, mqtt_url: str, topic_prefix: str
) -> None:
    broker = urlsplit(mqtt_url)
    async with TCPProxy(broker.hostname or "127.0.0.1", broker.port or 1883) as proxy:
        config = make_config(
            tmp_path,
            sqlite_url,
            simulator,
            bus_url=f"mqtt://127.0.0.1:{proxy.port}",
            topic_prefix=topic_prefix,
        )
        listener = create_bus(mqtt_url, topic_prefix=topic_prefix, client_id=f"{topic_prefix}-listener")
        async with (
            listener,
            listener.subscribe(f"{topic_prefix}/+/mo") as events,
            running_daemon(config) as daemon,
        ):
            assert daemon.sessions is not None and isinstance(daemon.bus, MQTTBus)
            sessions, bus = daemon.sessions, daemon.bus
            await asyncio.wait_for(asyncio.gather(listener.wait_connected(), bus.wait_connected()), 10)
            proxy.cut()
            await eventually(lambda: not bus.connected)  # the daemon's client noticed the broker is gone
            during = {f"outage {index}" for index in range(200)}
            for index in range(200):
                msisdn = "+" + subscriber(index % 30)
                simulator.inject_mo(MOVISTAR, msisdn, MOVISTAR_SHORT_CODE, f"outage {index}")

            async def stored_during_outage() -> bool:
                return set(await mo_texts(sessions)) == during

            # SMPP traffic and the database go on while the broker is unreachable
            await eventually(stored_during_outage, within=30)
            assert proxy.cut_off
            assert simulator.carrier(MOVISTAR).counters.mo_delivered == 200
            proxy.restore()
            stored = await mo_ids(sessions)
            received: set[int] = set()
            async with asyncio.timeout(30):
                while received != stored:
                    event = await events.get()
                    received.add(event.payload["id"])
            assert daemon.bus.dropped == 0
        assert simulator.carrier(MOVISTAR).counters.mo_failed == 0
