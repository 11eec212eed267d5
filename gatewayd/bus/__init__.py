"""The event bus: in-process (``memory://``) or MQTT (``mqtt://``, ``mqtts://``).

Topics follow docs/ARCHITECTURE.md under a configurable prefix; build them with ``bus.topics``::

    async with create_bus("mqtt://127.0.0.1:1883", topic_prefix="echat") as bus:
        await bus.publish(bus.topics.mo("997745"), {"mo_id": 1})
        async with bus.subscribe(bus.topics.all_mt_status()) as events:
            async for event in events:
                ...
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from gatewayd.bus.base import EventBus, Subscription
from gatewayd.bus.events import EVENT_VERSION, Event, InvalidTopic, Topics, topic_matches
from gatewayd.bus.memory import MemoryBus
from gatewayd.bus.mqtt import MQTTBus

__all__ = [
    "EVENT_VERSION",
    "Event",
    "EventBus",
    "InvalidTopic",
    "MQTTBus",
    "MemoryBus",
    "Subscription",
    "Topics",
    "create_bus",
    "topic_matches",
]

if TYPE_CHECKING:  # both implementations satisfy the protocol (checked by mypy)
    _memory_bus: EventBus = MemoryBus()
    _mqtt_bus: EventBus = MQTTBus("localhost")


def create_bus(
    url: str, *, topic_prefix: str = "echat", client_id: str | None = None, buffer_size: int = 10_000
) -> MemoryBus | MQTTBus:
    """The bus for ``url``: ``memory://``, ``mqtt://[user:password@]host[:port]`` or ``mqtts://`` (TLS
    with the system's CA store). ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryBus(topic_prefix=topic_prefix)
    if parts.scheme in ("mqtt", "mqtts") and parts.hostname:
        tls = ssl.create_default_context() if parts.scheme == "mqtts" else None
        return MQTTBus(
            parts.hostname,
            parts.port or (8883 if tls else 1883),
            topic_prefix=topic_prefix,
            client_id=client_id,
            buffer_size=buffer_size,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls_context=tls,
        )
    raise ValueError("bus URL must be memory://, mqtt://host[:port] or mqtts://host[:port]")
