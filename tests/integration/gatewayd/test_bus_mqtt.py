"""The MQTT bus against the real Mosquitto on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import anyio
import pytest

from gatewayd.bus import MQTTBus, create_bus
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mqtt_bus(mqtt_url: str, topic_prefix: str, **options: Any) -> MQTTBus:
    bus = create_bus(mqtt_url, topic_prefix=topic_prefix, **options)
    assert isinstance(bus, MQTTBus)
    return bus


async def test_round_trip_through_the_broker(mqtt_url: str, topic_prefix: str) -> None:
    async with mqtt_bus(mqtt_url, topic_prefix) as publisher, mqtt_bus(mqtt_url, topic_prefix) as listener:
        await asyncio.wait_for(asyncio.gather(publisher.wait_connected(), listener.wait_connected()), 10)
        async with listener.subscribe(listener.topics.all_mo()) as events:
            await publisher.publish(publisher.topics.mo("997745"), {"mo_id": 7})
            await publisher.publish(publisher.topics.mt_status(1), {"status": "queued"})
            await publisher.publish(publisher.topics.mo("795500"), {"mo_id": 8})
            first = await asyncio.wait_for(events.get(), 10)
            second = await asyncio.wait_for(events.get(), 10)
    assert (first.topic, first.payload) == (f"{topic_prefix}/997745/mo", {"v": 1, "mo_id": 7})
    assert (second.topic, second.payload["mo_id"]) == (f"{topic_prefix}/795500/mo", 8)
    assert publisher.dropped == 0 and publisher.pending == 0


async def test_a_burst_arrives_whole_and_in_order(mqtt_url: str, topic_prefix: str) -> None:
    """Events published faster than one write each leave in bundles of PUBLISH packets: the broker
    and every subscriber still see each event on its own topic, in order, whatever its size (the
    packet's length takes one to three bytes). 900 events: the broker keeps at most 1,000 QoS 0
    messages queued for a subscriber that lags (Mosquitto's ``max_queued_messages``) and drops the
    rest, which a busy test machine would otherwise see as lost events."""
    sizes = [0, 10, 200, 20_000]
    count = 900
    async with mqtt_bus(mqtt_url, topic_prefix) as publisher, mqtt_bus(mqtt_url, topic_prefix) as listener:
        await asyncio.wait_for(asyncio.gather(publisher.wait_connected(), listener.wait_connected()), 10)
        async with listener.subscribe(listener.topics.everything(), buffer=5_000) as events:
            for number in range(count):
                topic = publisher.topics.mo("997745") if number % 2 else publisher.topics.mt_status(number)
                await publisher.publish(topic, {"n": number, "pad": "x" * sizes[number % len(sizes)]})
            received = [await asyncio.wait_for(events.get(), 10) for _ in range(count)]
        await asyncio.wait_for(publisher.flushed(), 10)
    assert [event.payload["n"] for event in received] == list(range(count))
    assert received[3].topic == f"{topic_prefix}/997745/mo"
    assert received[4].topic == f"{topic_prefix}/mt/4/status"
    assert [len(event.payload["pad"]) for event in received[:4]] == sizes
    assert publisher.dropped == 0 and listener.dropped == 0


async def test_a_busy_process_keeps_nothing_incoming_outside_the_subscriptions(
    mqtt_url: str, topic_prefix: str
) -> None:
    """Incoming events go into the subscriptions as they are read, however busy the event loop (a
    panel serving fifty desk streams): a subscriber that lags loses the oldest from its bounded buffer
    and nothing piles up in the connection's queue. Before, aiomqtt's unbounded queue sat in between,
    drained one message per several loop passes while the socket gave one a pass, and kept every event
    of a busy panel since it fell behind: its memory grew by megabytes a minute in the soak."""
    count, kept = 600, 50
    async with mqtt_bus(mqtt_url, topic_prefix) as publisher, mqtt_bus(mqtt_url, topic_prefix) as listener:
        await asyncio.wait_for(asyncio.gather(publisher.wait_connected(), listener.wait_connected()), 10)
        async with listener.subscribe(listener.topics.everything(), buffer=kept) as events:
            stopping = asyncio.Event()

            async def busy() -> None:  # every loop pass costs a few milliseconds, as in a loaded panel
                while not stopping.is_set():
                    until = time.perf_counter() + 0.001
                    while time.perf_counter() < until:
                        pass
                    await asyncio.sleep(0)

            waiting_in_connection: list[int] = []

            def all_arrived() -> bool:
                client = listener._client
                waiting_in_connection.append(len(client.messages) if client is not None else 0)
                return events.dropped == count - kept

            hogs = [asyncio.create_task(busy()) for _ in range(4)]
            try:
                for number in range(count):
                    await publisher.publish(publisher.topics.mt_status(number), {"n": number})
                await eventually(all_arrived, within=60, interval=0, what=f"{count} events at the listener")
            finally:
                stopping.set()
                await asyncio.gather(*hogs)
            newest = [event.payload["n"] for event in events.take_queued()]
    assert newest == list(range(count - kept, count))
    assert max(waiting_in_connection) == 0


async def test_wildcard_subscription_sees_every_kind(mqtt_url: str, topic_prefix: str) -> None:
    async with mqtt_bus(mqtt_url, topic_prefix) as bus:
        await asyncio.wait_for(bus.wait_connected(), 10)
        async with bus.subscribe(bus.topics.everything()) as events:
            await bus.publish(bus.topics.bind_state("movistar"), {"up": True})
            await bus.publish(bus.topics.conversation_assigned(3), {"operator_id": 2})
            topics = {(await asyncio.wait_for(events.get(), 10)).topic for _ in range(2)}
    assert topics == {f"{topic_prefix}/bind/movistar/state", f"{topic_prefix}/conversation/3/assigned"}


async def test_subscription_made_before_connecting_is_sent_on_connect(
    mqtt_url: str, topic_prefix: str
) -> None:
    bus = mqtt_bus(mqtt_url, topic_prefix)
    async with bus, bus.subscribe(bus.topics.all_mt_status()) as events:
        await bus.publish(bus.topics.mt_status(9), {"status": "delivered"})
        event = await asyncio.wait_for(events.get(), 10)
    assert event.payload == {"v": 1, "status": "delivered"}


async def test_unreachable_broker_never_blocks_publish_and_counts_drops(
    topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = mqtt_bus(f"mqtt://127.0.0.1:{closed_port()}", topic_prefix, buffer_size=100)
    async with bus:
        for number in range(250):
            await bus.publish(bus.topics.mt_status(number), {"n": number})
        # the reconnect loop fails a few times, and the buffer stays as it was
        await eventually(lambda: caplog.text.count("bus.mqtt.disconnected") >= 3)
        assert not bus.connected
        assert bus.pending == 100
        assert bus.dropped == 150


async def test_closing_with_a_backlog_ends_at_once(mqtt_url: str, topic_prefix: str) -> None:
    """Leaving the bus while it is still publishing a backlog ends its loops. On Python 3.11 aiomqtt's
    publish can swallow the cancellation (it lands as the publish completes); the bus must not then
    keep waiting for events that will never come (a daemon hung after SIGTERM). Twenty tries: the
    swallowed cancellation is a race, lost in a few of them."""
    for attempt in range(20):
        bus = mqtt_bus(mqtt_url, f"{topic_prefix}-{attempt}")
        await bus.__aenter__()
        await asyncio.wait_for(bus.wait_connected(), 10)
        for number in range(2000):
            await bus.publish(bus.topics.mt_status(number), {"status": "accepted"})
        # close mid-drain, while publishes are awaited
        await eventually(lambda: bus.pending <= 1900, within=10, interval=0.001)  # noqa: B023
        closing = asyncio.ensure_future(bus.__aexit__(None, None, None))
        done, _ = await asyncio.wait([closing], timeout=10)
        assert done, f"try {attempt}: the bus did not stop ({bus.pending} events left)"
        closing.result()


async def test_streams_cut_while_subscribing_or_leaving_log_nothing(
    mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A desk stream whose browser leaves is cancelled by Starlette's cancel scope, which cancels every
    await inside it, also the broker's SUBSCRIBE / UNSUBSCRIBE in flight. The broker's answer to a call
    cut that way must not be logged as an unexpected message id, and the bus goes on subscribing."""
    caplog.set_level(logging.WARNING, logger="mqtt")
    async with mqtt_bus(mqtt_url, topic_prefix) as bus:
        await asyncio.wait_for(bus.wait_connected(), 10)
        pattern = bus.topics.everything()

        async def browser_leaves(at_once: bool) -> None:
            with anyio.CancelScope() as scope:
                if at_once:  # before the broker confirmed the SUBSCRIBE
                    asyncio.get_running_loop().call_soon(scope.cancel)
                async with bus.subscribe(pattern) as subscription:
                    scope.cancel()  # while the stream waits: leaving sends UNSUBSCRIBE
                    await subscription.get()

        for round_ in range(20):
            await browser_leaves(at_once=round_ % 2 == 0)
        async with bus.subscribe(pattern) as events:
            for number in range(3):  # every answer to the cut calls has come back by the third event
                await bus.publish(bus.topics.mt_status(number), {"n": number})
                assert (await asyncio.wait_for(events.get(), 10)).payload["n"] == number
    assert [record.getMessage() for record in caplog.records if record.name == "mqtt"] == []


async def test_two_buses_configured_with_one_client_id_do_not_knock_each_other_off(
    mqtt_url: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two panels started from one configuration: the broker would drop the older connection each time
    the other connected with the same identifier, over and over. Each bus has its own identifier, so
    both stay connected and hear each other."""
    caplog.set_level(logging.INFO, logger="gatewayd.bus.mqtt")
    first = mqtt_bus(mqtt_url, topic_prefix, client_id="gatewayd-node1-panel")
    second = mqtt_bus(mqtt_url, topic_prefix, client_id="gatewayd-node1-panel")
    async with first, second:
        await asyncio.wait_for(asyncio.gather(first.wait_connected(), second.wait_connected()), 10)
        async with (
            first.subscribe(first.topics.mt_status(1)) as heard_by_first,
            second.subscribe(second.topics.mt_status(2)) as heard_by_second,
        ):
            for round_trip in range(5):
                await first.publish(first.topics.mt_status(2), {"round": round_trip})
                assert (await asyncio.wait_for(heard_by_second.get(), 10)).payload["round"] == round_trip
                await second.publish(second.topics.mt_status(1), {"round": round_trip})
                assert (await asyncio.wait_for(heard_by_first.get(), 10)).payload["round"] == round_trip
        lines = [record.getMessage() for record in caplog.records if record.name == "gatewayd.bus.mqtt"]
    assert not [line for line in lines if line.startswith("bus.mqtt.disconnected")], lines
    assert first.client_id != second.client_id
    assert first.client_id is not None and first.client_id.startswith("gatewayd-node1-panel-")
    for bus in (first, second):
        assert sum(f"client_id={bus.client_id}" in line for line in lines) == 1, lines
