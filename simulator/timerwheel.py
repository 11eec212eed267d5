"""A hashed timer wheel: O(1) scheduling of many small deadlines, drained in batches by one periodic tick.

Receipts and load-generator replies are thousands a second; one ``call_later`` each would swamp the
event loop, so they go in buckets of ``tick`` seconds and the simulator's clock takes due buckets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class TimerWheel(Generic[T]):
    def __init__(self, tick: float, now: float) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        self.tick = tick
        self._buckets: dict[int, list[T]] = {}
        self._next_slot = math.floor(now / tick)
        self._size = 0
        #: Called when an item goes into the empty wheel: whoever drains it may be sleeping meanwhile.
        self.on_first: Callable[[], None] | None = None

    def __len__(self) -> int:
        return self._size

    def schedule(self, due: float, item: T) -> None:
        """Keep ``item`` until ``due`` (monotonic seconds); a past deadline fires on the next drain."""
        if not self._size and self.on_first is not None:
            self.on_first()
        slot = math.ceil(due / self.tick)
        if slot < self._next_slot:
            slot = self._next_slot
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [item]
        else:
            bucket.append(item)
        self._size += 1

    def drain(self, now: float) -> Iterator[T]:
        """Every item due at ``now`` or earlier, oldest slot first."""
        last = math.floor(now / self.tick)
        buckets = self._buckets
        slot = self._next_slot
        if len(buckets) < last - slot:
            slots = sorted(s for s in buckets if s <= last)  # a long pause: visit only filled slots
        else:
            slots = [s for s in range(slot, last + 1) if s in buckets]
        self._next_slot = last + 1
        for due_slot in slots:
            items = buckets.pop(due_slot)
            self._size -= len(items)
            yield from items

    def clear(self) -> None:
        self._buckets.clear()
        self._size = 0
