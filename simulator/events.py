"""The simulator's in-process event stream (MOs, MTs, receipts) for the phone page's server-sent events.

Publishing never blocks and costs one attribute check when nobody listens: the hot path calls
``if hub.listening:`` before it builds an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Event = dict[str, Any]


class EventHub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.listening = False
        #: Events a slow subscriber did not take (its queue was full).
        self.dropped = 0

    def publish(self, event: Event) -> None:
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        self.listening = True
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            self.listening = bool(self._subscribers)
