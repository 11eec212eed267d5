"""The MQTT bus (aiomqtt 2.x): several daemons and panels share events through one broker.

One named task keeps a connection (``bus.mqtt.connection``), reconnecting with exponential back-off;
while connected, ``bus.mqtt.publish`` drains the outgoing buffer, incoming messages go to the local
subscriptions as they are read (``bus.mqtt.receive`` notices the broker leaving) and
``bus.mqtt.subscriptions`` keeps the broker's subscriptions in line with the local ones.
Subscriptions are made again after every reconnect. A broker outage never blocks ``publish``: the
buffer keeps the newest ``buffer_size`` events, dropping (and counting) the oldest. Nothing incoming
waits outside the subscriptions' bounded buffers, however busy the process.

Only ``bus.mqtt.subscriptions`` sends SUBSCRIBE and UNSUBSCRIBE, never the code entering or leaving
``subscribe()``: that code is often a request cancelled at any await (a browser leaving its event
stream), and an aiomqtt call cut that way forgets its message id, so the broker's answer would be
logged as an unexpected message id with a traceback.

Each bus has a client identifier of its own: the configured ``client_id`` names the program, and the
bus adds its process id and a random suffix. A broker drops the older of two connections with one
identifier, so two processes sharing a configuration (two panels) would otherwise take turns dropping
each other, several times a second, for as long as both run.

A broker has ``answer_timeout`` seconds to answer (CONNECT, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT); one
that takes longer is taken for gone and the connection made again. So a connection that went silent
(a broker behind a dead link: no reset, no answers) holds nobody for long: not a panel starting (its
subscriptions wait for the broker's confirmation), nor one told to stop meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import secrets
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho

from gatewayd.bus.base import DEFAULT_SUBSCRIPTION_BUFFER, Subscription, SubscriptionSet
from gatewayd.bus.events import Event, Topics, check_pattern, check_topic, decode_payload, encode_payload

logger = logging.getLogger(__name__)

#: Seconds a SUBSCRIBE / UNSUBSCRIBE in flight may still take when the bus closes or the connection
#: fails meanwhile (a live broker answers in milliseconds).
ANSWER_GRACE = 1.0
#: Seconds the broker has to answer a CONNECT, SUBSCRIBE, UNSUBSCRIBE or DISCONNECT.
ANSWER_TIMEOUT = 2.0
#: Most QoS 0 events handed to the connection as one write (see :func:`_publish_bundle`).
PUBLISH_BUNDLE = 500


def unique_client_id(name: str) -> str:
    """``name`` made this bus's own: ``<name>-<pid>-<random>`` (MQTT allows 23 characters at least;
    brokers in use take far more)."""
    return f"{name}-{os.getpid()}-{secrets.token_hex(3)}"


async def _answered(call: Coroutine[Any, Any, object]) -> None:
    """Awaits a broker call to its answer even when the caller is cancelled (the bus closing): aiomqtt
    forgets the message id of a call cut halfway and then logs the broker's answer as unexpected."""
    pending = asyncio.ensure_future(call)
    try:
        await asyncio.shield(pending)
    except asyncio.CancelledError:
        await asyncio.wait([pending], timeout=ANSWER_GRACE)
        if not pending.done():
            pending.cancel()  # the connection is gone: no answer will come
        elif not pending.cancelled():
            pending.exception()  # retrieved: the connection loop reports failures
        raise


class MQTTBus:
    """An :class:`~gatewayd.bus.base.EventBus` over an MQTT broker. ``qos`` applies to publishing and
    subscribing (0 by default: events are notifications; the database holds the truth).
    ``client_id`` names the program; the identifier the broker sees is made unique per bus."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        topic_prefix: str = "echat",
        client_id: str | None = None,
        buffer_size: int = 10_000,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        qos: int = 0,
        reconnect_initial: float = 0.1,
        reconnect_max: float = 5.0,
        keepalive: int = 30,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.topics = Topics(topic_prefix)
        self.host, self.port = host, port
        #: What the broker knows this bus by (None: aiomqtt makes up a random one).
        self.client_id = unique_client_id(client_id) if client_id else None
        self.buffer_size = buffer_size
        self.malformed = 0
        self._username, self._password, self._tls = username, password, tls_context
        self._qos = qos
        self._reconnect_initial, self._reconnect_max = reconnect_initial, reconnect_max
        self._keepalive = keepalive
        self._answer_timeout = answer_timeout
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._dropped = 0
        self._subscriptions = SubscriptionSet()
        #: Patterns the broker confirmed on the current connection (an UNSUBSCRIBE removes its pattern
        #: before it is sent, so a subscriber never trusts a pattern about to be dropped).
        self._at_broker: set[str] = set()
        self._patterns_changed = asyncio.Event()
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- the EventBus API ----------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Events lost: the oldest dropped from the full outgoing buffer, plus those dropped by slow
        local subscribers."""
        return self._dropped + self._subscriptions.dropped

    @property
    def pending(self) -> int:
        """Events waiting in the outgoing buffer."""
        return len(self._outbox)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Returns once the broker connection is up (use with a timeout)."""
        await self._connected.wait()

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        body = encode_payload(payload)
        if len(self._outbox) >= self.buffer_size:
            self._outbox.popleft()
            self._dropped += 1
        self._outbox.append((check_topic(topic), body))
        self._outbox_ready.set()
        self._outbox_empty.clear()

    async def flushed(self) -> None:
        """Returns once the outgoing buffer has been handed to the broker (waits for a connection)."""
        await self._outbox_empty.wait()

    @asynccontextmanager
    async def subscribe(
        self, pattern: str, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> AsyncIterator[Subscription]:
        """Yields the local subscription once the broker has confirmed the pattern (at once while
        disconnected: connecting subscribes every pattern). Leaving never waits: the broker's
        subscription is dropped in the background once no local subscription uses the pattern.
        Cancelling the caller at any point leaves nothing behind."""
        subscription = Subscription(check_pattern(pattern), buffer)
        self._subscriptions.add(subscription)
        try:
            if self.connected and pattern not in self._at_broker:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirmations.setdefault(pattern, []).append(confirmed)
                self._patterns_changed.set()
                await confirmed  # a cancellation ends this wait only, never the broker's call
            yield subscription
        finally:
            self._subscriptions.remove(subscription)
            if self._subscriptions.count(pattern) == 0:
                self._patterns_changed.set()

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("the bus is already running; it is not re-entrant")
        self._closing = False
        self._task = asyncio.create_task(self._connection_loop(), name="bus.mqtt.connection")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        # The loops also stop on this flag: on Python 3.11 aiomqtt's publish (asyncio.wait_for) swallows
        # a cancellation that lands as its publish completes, and a publish loop that lost its
        # cancellation would then wait for the next event forever, and the daemon never exit.
        self._closing = True
        self._outbox_ready.set()
        if task is not None:
            # Cancelled again until it has ended: a cancellation that lands as aiomqtt's CONNECT is
            # answered is swallowed (asyncio.wait_for on Python 3.11), and the loop would go on to
            # wait for messages from a broker that sends none.
            while not task.done():
                task.cancel()
                # not ``await task``: a cancellation of our own caller propagates
                await asyncio.wait([task], timeout=ANSWER_GRACE + self._answer_timeout)
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        self._subscriptions.close_all()
        self._release_confirmations()

    # -- background loops ----------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        delay = self._reconnect_initial
        while not self._closing:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self._username,
                    password=self._password,
                    tls_context=self._tls,
                    keepalive=self._keepalive,
                    timeout=self._answer_timeout,
                    queue_type=_handing_over(self._receive),
                ) as client:
                    if self._closing:  # the bus closed while connecting (see __aexit__)
                        return
                    await self._on_connected(client)
                    delay = self._reconnect_initial
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._publish_loop(client), name="bus.mqtt.publish")
                        group.create_task(self._receive_loop(client), name="bus.mqtt.receive")
                        group.create_task(self._subscription_loop(client), name="bus.mqtt.subscriptions")
            except* (aiomqtt.MqttError, OSError) as errors:
                logger.warning(
                    "bus.mqtt.disconnected host=%s port=%s client_id=%s error=%s retry_in=%.1fs",
                    self.host,
                    self.port,
                    self.client_id,
                    errors.exceptions[0],
                    delay,
                )
            finally:
                self._client = None
                self._connected.clear()
                self._at_broker.clear()
                # Whoever waits for a confirmation goes on: connecting again subscribes every pattern.
                self._release_confirmations()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max)

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        await self._sync_subscriptions(client)
        self._client = client
        self._connected.set()
        logger.info("bus.mqtt.connected host=%s port=%s client_id=%s", self.host, self.port, self.client_id)

    async def _subscription_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._patterns_changed.wait()
            await self._sync_subscriptions(client)

    async def _sync_subscriptions(self, client: aiomqtt.Client) -> None:
        """Subscribes the patterns local subscriptions use and the broker lacks, unsubscribes those no
        one uses any more, until nothing changed meanwhile."""
        while True:
            self._patterns_changed.clear()
            wanted = self._subscriptions.patterns()
            for pattern in sorted(wanted - self._at_broker):
                await _answered(client.subscribe(pattern, qos=self._qos))
                self._at_broker.add(pattern)
                for confirmed in self._confirmations.pop(pattern, []):
                    if not confirmed.done():
                        confirmed.set_result(None)
            for pattern in sorted(self._at_broker - wanted):
                self._at_broker.discard(pattern)
                await _answered(client.unsubscribe(pattern))
            if not self._patterns_changed.is_set():
                return

    def _release_confirmations(self) -> None:
        for waiting in self._confirmations.values():
            for confirmed in waiting:
                if not confirmed.done():
                    confirmed.set_result(None)
        self._confirmations.clear()

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        bundling = self._qos == 0 and _can_bundle(client)
        while not self._closing:
            if not self._outbox:
                self._outbox_empty.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            if bundling and len(self._outbox) > 1:
                taken = list(itertools.islice(self._outbox, PUBLISH_BUNDLE))
                await _publish_bundle(client, taken)
            else:
                taken = [self._outbox[0]]
                await client.publish(taken[0][0], taken[0][1], qos=self._qos)
            # Removed only once handed to the client: a failed publish is retried after reconnecting.
            # (Dropping the oldest while we waited may have removed some of them already.)
            for _, body in taken:
                if self._outbox and self._outbox[0][1] is body:
                    self._outbox.popleft()

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        """Ends the connection when the broker goes (the iterator raises). Incoming messages reach the
        subscriptions as they are read (:func:`_handing_over`); one that went through aiomqtt's queue
        after all is handed over here."""
        async for message in client.messages:
            self._receive(message)

    def _receive(self, message: aiomqtt.Message) -> None:
        body = message.payload
        payload = decode_payload(body) if isinstance(body, bytes | bytearray) else None
        if payload is None:
            self.malformed += 1
            return
        self._subscriptions.dispatch(Event(message.topic.value, payload))


def _handing_over(receive: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue (its ``queue_type``) made a hand-off: each message read from the socket
    goes straight to ``receive``, i.e. into the subscriptions' bounded buffers, and nothing waits in
    between. aiomqtt's own queue is unbounded and its iterator takes one message per task and wait
    (several event-loop passes), while the socket is read a packet a pass: a process whose loop is
    busy (a panel serving fifty desk streams) fell behind and kept every event since in that queue,
    growing by megabytes a minute."""

    class HandingOver(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            receive(item)

    return HandingOver


def _can_bundle(client: aiomqtt.Client) -> bool:
    """Whether this aiomqtt / paho-mqtt pair has the internals :func:`_publish_bundle` uses (the lock
    pins both; another version falls back to one ``publish`` call per event)."""
    inner = getattr(client, "_client", None)
    return (
        inner is not None
        and all(hasattr(inner, name) for name in ("_packet_queue", "_mid_generate", "_sock", "_protocol"))
        and isinstance(getattr(client, "_pending_publishes", None), dict)
    )


def _publish_packet(topic: str, body: bytes, mqtt5: bool) -> bytes:
    """One QoS 0 PUBLISH packet (MQTT 3.1.1 or 5: no packet id; 5 adds an empty property list)."""
    name = topic.encode("utf-8")
    head = len(name).to_bytes(2, "big") + name + (b"\x00" if mqtt5 else b"")
    remaining = len(head) + len(body)
    length = bytearray()
    while True:
        byte, remaining = remaining % 128, remaining // 128
        length.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"\x30" + bytes(length) + head + body


async def _publish_bundle(client: aiomqtt.Client, events: list[tuple[str, bytes]]) -> None:
    """Hands several QoS 0 events to the connection as one write, waiting like ``client.publish``
    until it is written. paho-mqtt spends ~25 µs of CPU per ``publish`` call (and aiomqtt ~100 µs with
    its wait), which at thousands of MOs a second was the daemon's largest cost; one queued packet
    holding many PUBLISH packets costs ~1 µs per event. The broker sees ordinary PUBLISH packets: the
    topics and payloads are the same as one call per event."""
    inner: Any = getattr(client, "_client")  # noqa: B009  (aiomqtt's paho client)
    if inner._sock is None:
        raise aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "Could not publish message")
    mqtt5 = inner._protocol == paho.MQTTv5
    bundle = b"".join([_publish_packet(topic, body, mqtt5) for topic, body in events])
    info = paho.MQTTMessageInfo(inner._mid_generate())
    pending: dict[int, asyncio.Event] = getattr(client, "_pending_publishes")  # noqa: B009
    written = asyncio.Event()
    pending[info.mid] = written  # set by aiomqtt's on_publish once paho has written the bundle
    try:
        rc = inner._packet_queue(paho.PUBLISH, bundle, info.mid, 0, info)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(rc, "Could not publish message")
        if not info.is_published():
            try:
                await asyncio.wait_for(written.wait(), None if client.timeout == math.inf else client.timeout)
            except TimeoutError:
                raise aiomqtt.MqttError("Operation timed out") from None
    finally:
        pending.pop(info.mid, None)
