"""The in-process bus and the topic helpers (no sockets)."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime

import pytest

from gatewayd.bus import Event, InvalidTopic, MemoryBus, MQTTBus, Topics, create_bus, topic_matches
from gatewayd.bus.events import decode_payload, encode_payload


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("echat/+/mo", "echat/997745/mo", True),
        ("echat/+/mo", "echat/mt/1/status", False),
        ("echat/#", "echat/mt/1/status", True),
        ("echat/#", "echat", True),
        ("echat/mt/+/status", "echat/mt/12/status", True),
        ("echat/mt/+", "echat/mt/12/status", False),
        ("echat/bind/movistar/state", "echat/bind/movistar/state", True),
        ("echat/bind/movistar/state", "echat/bind/vodafone/state", False),
    ],
)
def test_topic_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


def test_topics_follow_the_architecture_under_a_prefix() -> None:
    topics = Topics("tenant-a/echat")
    assert topics.mo("997745") == "tenant-a/echat/997745/mo"
    assert topics.mt_status(42) == "tenant-a/echat/mt/42/status"
    assert topics.bind_state("movistar") == "tenant-a/echat/bind/movistar/state"
    assert topics.conversation_assigned(7) == "tenant-a/echat/conversation/7/assigned"
    assert topic_matches(topics.all_mo(), topics.mo("795500"))
    assert topic_matches(topics.everything(), topics.mt_status(1))


async def test_subscribers_get_matching_events_with_version() -> None:
    async with MemoryBus(topic_prefix="t") as bus:
        async with bus.subscribe(bus.topics.all_mo()) as mos, bus.subscribe(bus.topics.everything()) as all_:
            await bus.publish(bus.topics.mo("997745"), {"mo_id": 1, "text": "ñandú"})
            await bus.publish(bus.topics.mt_status(5), {"status": "accepted"})
            assert await mos.get() == Event("t/997745/mo", {"v": 1, "mo_id": 1, "text": "ñandú"})
            assert [(await all_.get()).topic for _ in range(2)] == ["t/997745/mo", "t/mt/5/status"]
            await bus.publish(bus.topics.mt_status(6), {"status": "failed"})
            assert (await all_.get()).payload["status"] == "failed"


async def test_slow_subscriber_loses_the_oldest_and_publish_never_waits() -> None:
    async with MemoryBus() as bus, bus.subscribe("echat/#", buffer=3) as events:
        for number in range(10):
            await bus.publish(bus.topics.mt_status(number), {"n": number})
        assert bus.dropped == 7 and events.dropped == 7
        assert [(await events.get()).payload["n"] for _ in range(3)] == [7, 8, 9]


async def test_iteration_ends_when_the_bus_closes() -> None:
    bus = MemoryBus()
    received: list[Event] = []

    async def reader() -> None:
        async with bus.subscribe("echat/#") as events:
            async for event in events:
                received.append(event)

    async with bus:
        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        await bus.publish("echat/x", {})
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 1)
    assert [event.topic for event in received] == ["echat/x"]


async def test_bad_topics_and_payloads_fail_at_the_publisher() -> None:
    bus = MemoryBus()
    with pytest.raises(InvalidTopic):
        await bus.publish("echat/+/mo", {})
    with pytest.raises(TypeError):
        await bus.publish("echat/x", {"when": object()})
    with pytest.raises(InvalidTopic):
        async with bus.subscribe("echat/#/mo"):
            pass


def test_create_bus_from_urls() -> None:
    assert isinstance(create_bus("memory://", topic_prefix="p"), MemoryBus)
    mqtt = create_bus("mqtt://user:p%40ss@broker.example:1884", client_id="gw-1")
    assert isinstance(mqtt, MQTTBus)
    assert (mqtt.host, mqtt.port) == ("broker.example", 1884)
    # the configured id names the program; each bus adds its pid and a random suffix
    assert re.fullmatch(rf"gw-1-{os.getpid()}-[0-9a-f]{{6}}", mqtt.client_id or "")
    other = create_bus("mqtt://broker.example", client_id="gw-1")
    assert isinstance(other, MQTTBus) and other.client_id != mqtt.client_id
    with pytest.raises(ValueError, match="bus URL"):
        create_bus("amqp://broker")


async def test_subscribers_get_their_own_copy_as_json_would_give_it() -> None:
    async with MemoryBus(topic_prefix="t") as bus, bus.subscribe("t/#") as subscription:
        flat = {"id": 7, "status": "delivered", "ratio": 0.5, "final": True, "detail": None}
        await bus.publish("t/mt/7/status", flat)
        nested = {"id": 8, "parts": (1, 2), "ratio": 1.0}
        await bus.publish("t/mt/8/status", nested)
        flat["status"] = "changed after publishing"
        first = await subscription.get()
        second = await subscription.get()
    assert first.payload == {
        "v": 1,
        "id": 7,
        "status": "delivered",
        "ratio": 0.5,
        "final": True,
        "detail": None,
    }
    assert second.payload == {"v": 1, "id": 8, "parts": [1, 2], "ratio": 1.0}  # the tuple came back a list


async def test_a_payload_json_cannot_carry_fails_without_subscribers_too() -> None:
    bus = MemoryBus()
    with pytest.raises(TypeError):  # the payload builders format their times themselves
        await bus.publish("echat/x", {"at": datetime.now(UTC)})
    with pytest.raises(TypeError):  # flat, but past the 64 bits the encoding holds, as over MQTT
        await bus.publish("echat/x", {"id": 2**64})
    async with bus.subscribe("echat/#") as subscription:
        await bus.publish("echat/x", {"id": 2**64 - 1, "low": -(2**63)})
        assert (await subscription.get()).payload == {"v": 1, "id": 2**64 - 1, "low": -(2**63)}


async def test_what_json_cannot_hold_as_it_is_arrives_as_an_mqtt_subscriber_gets_it() -> None:
    async with MemoryBus(topic_prefix="t") as bus, bus.subscribe("t/#") as subscription:
        await bus.publish("t/x", {"ratio": float("nan"), "top": float("inf"), 7: "seven", "text": "año ✓"})
        event = await subscription.get()
    # NaN and the infinities are no JSON: null, so that every subscriber can read the event
    assert event.payload == {"v": 1, "ratio": None, "top": None, "7": "seven", "text": "año ✓"}


def test_an_event_body_that_is_no_json_object_is_none() -> None:
    assert decode_payload(encode_payload({"id": 1})) == {"v": 1, "id": 1}
    assert encode_payload({"v": 2, "id": 1}) == b'{"v":2,"id":1}'  # compact, its own version kept
    for body in (b"", b"[1]", b"NaN", b'{"a":', b'{"a":"\xff"}', b'{"a": 1} x'):
        assert decode_payload(body) is None


async def test_remembered_matches_follow_literal_levels_and_subscription_changes() -> None:
    async with (
        MemoryBus(topic_prefix="t") as bus,
        bus.subscribe("t/mt/+/status") as statuses,
        bus.subscribe("t/+/mo") as mos,
    ):
        await bus.publish("t/mt/1/status", {"n": 1})
        await bus.publish("t/5/mo", {"n": 5})
        async with bus.subscribe("t/mt/2/status") as only_two, bus.subscribe("t/#") as everything:
            for number in (1, 2, 3):
                await bus.publish(f"t/mt/{number}/status", {"n": number})
            await bus.publish("t/mt/2/other", {"n": 0})
            await bus.publish("t/mt/2/status", {"n": 99})
            assert [(await only_two.get()).payload["n"] for _ in range(2)] == [2, 99]
            assert [(await everything.get()).payload["n"] for _ in range(5)] == [1, 2, 3, 0, 99]
        await bus.publish("t/mt/4/status", {"n": 4})
        assert [(await statuses.get()).payload["n"] for _ in range(6)] == [1, 1, 2, 3, 99, 4]
        assert only_two.dropped == 0 and statuses.dropped == 0
        await bus.publish("t/6/mo", {"n": 6})
        assert [(await mos.get()).payload["n"] for _ in range(2)] == [5, 6]
