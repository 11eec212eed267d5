"""The ``EventBus`` protocol and the subscription machinery both implementations share."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, Self

from gatewayd.bus.events import Event, Topics, topic_matches

DEFAULT_SUBSCRIPTION_BUFFER = 10_000


class EventBus(Protocol):
    """Publish/subscribe for the daemon and the panel.

    ``publish`` never waits for a broker or a slow subscriber: events go into a bounded buffer and the
    oldest are dropped (and counted in ``dropped``) when it is full. ``subscribe(pattern)`` is an async
    context manager yielding a :class:`Subscription`; iterate it for :class:`Event` objects. Patterns
    use MQTT wildcards (``+`` one level, ``#`` the rest). The bus is used as ``async with bus:``.
    """

    topics: Topics

    @property
    def dropped(self) -> int: ...

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None: ...

    async def flushed(self) -> None:
        """Returns once every event published so far has left this process (use with a timeout)."""
        ...

    def subscribe(
        self, pattern: str, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


class Subscription:
    """Events matching one pattern, in order. A full buffer drops the oldest event (``dropped``).
    Iteration ends when the subscription or its bus is closed."""

    def __init__(self, pattern: str, buffer: int) -> None:
        if buffer < 1:
            raise ValueError("a subscription buffer holds at least one event")
        self.pattern = pattern
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._buffer = buffer
        self._ready = asyncio.Event()
        self._closed = False

    def deliver(self, event: Event) -> bool:
        """Queues the event; returns False when an older one had to be dropped to make room."""
        if self._closed:
            return True
        room = len(self._events) < self._buffer
        if not room:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        self._ready.set()
        return room

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    async def get(self) -> Event:
        """The next event; StopAsyncIteration once closed and drained."""
        return await self.__anext__()

    def take_queued(self) -> list[Event]:
        """Every event already queued, in order, without waiting (a reader catching up handles them
        as one batch)."""
        queued = list(self._events)
        self._events.clear()
        return queued


class SubscriptionSet:
    """The live subscriptions of a bus and fan-out of incoming events to them."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.dropped = 0

    def add(self, subscription: Subscription) -> None:
        self._subscriptions.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        subscription.close()
        if subscription in self._subscriptions:  # close_all() may have emptied the set already
            self._subscriptions.remove(subscription)

    def patterns(self) -> set[str]:
        return {subscription.pattern for subscription in self._subscriptions}

    def count(self, pattern: str) -> int:
        return sum(1 for subscription in self._subscriptions if subscription.pattern == pattern)

    def dispatch(self, event: Event) -> None:
        for subscription in self._subscriptions:
            if topic_matches(subscription.pattern, event.topic) and not subscription.deliver(event):
                self.dropped += 1

    def close_all(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
