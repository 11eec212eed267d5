"""The in-process bus (``memory://``): the demo and single-process deployments, and tests."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

from gatewayd.bus.base import DEFAULT_SUBSCRIPTION_BUFFER, Subscription, SubscriptionSet
from gatewayd.bus.events import (
    EVENT_VERSION,
    Event,
    Topics,
    check_pattern,
    check_topic,
    decode_payload,
    encode_payload,
    topic_matches,
)

_JSON_SCALARS = (str, bool, type(None))
#: The integers the encoding holds (``encode_payload``: orjson refuses one past 64 bits).
_INT_RANGE = range(-(2**63), 2**64)


def plain_copy(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The payload as JSON would bring it back (with ``"v"``), built without JSON, when it is flat:
    string keys and str / bool / None / 64-bit int / finite float values of exactly those types (the
    daemon's own events). None when only the JSON round trip gives the right answer (nested values,
    subclasses such as enums, values JSON cannot carry)."""
    for key, value in payload.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is int:
            if value not in _INT_RANGE:
                return None
        elif not (kind in _JSON_SCALARS or (kind is float and math.isfinite(value))):
            return None
    return dict(payload) if "v" in payload else {"v": EVENT_VERSION, **payload}


#: Distinct topic shapes whose matching subscriptions are remembered; past this the memo starts over.
MATCH_MEMO_LIMIT = 4096


class MemoizedSubscriptionSet(SubscriptionSet):
    """Fan-out that matches each topic *shape* against the patterns once. A topic's shape is its
    number of levels and, per level, the level itself when some pattern names it literally at that
    position, else a placeholder: a level no pattern names (an MT id in ``<prefix>/mt/<id>/status``)
    fails every literal there alike, so every MT status event after the first is one dict lookup."""

    def __init__(self) -> None:
        super().__init__()
        self._members: list[Subscription] = []
        #: Per level position, the literal levels the patterns name there.
        self._literals: tuple[frozenset[str], ...] = ()
        self._matching: dict[tuple[int, tuple[str | None, ...]], tuple[Subscription, ...]] = {}

    def add(self, subscription: Subscription) -> None:
        super().add(subscription)
        self._members.append(subscription)
        self._patterns_changed()

    def remove(self, subscription: Subscription) -> None:
        super().remove(subscription)
        if subscription in self._members:
            self._members.remove(subscription)
        self._patterns_changed()

    def close_all(self) -> None:
        super().close_all()
        self._members.clear()
        self._patterns_changed()

    def _patterns_changed(self) -> None:
        literals: list[set[str]] = []
        for subscription in self._members:
            for position, level in enumerate(subscription.pattern.split("/")):
                if level == "#":
                    break
                while len(literals) <= position:
                    literals.append(set())
                if level != "+":
                    literals[position].add(level)
        self._literals = tuple(frozenset(named) for named in literals)
        self._matching.clear()

    def dispatch(self, event: Event) -> None:
        levels = event.topic.split("/")
        shape = (
            len(levels),
            tuple(
                level if level in named else None
                for level, named in zip(levels, self._literals, strict=False)
            ),
        )
        matching = self._matching.get(shape)
        if matching is None:
            if len(self._matching) >= MATCH_MEMO_LIMIT:
                self._matching.clear()
            matching = self._matching[shape] = tuple(
                subscription
                for subscription in self._members
                if topic_matches(subscription.pattern, event.topic)
            )
        for subscription in matching:
            if not subscription.deliver(event):
                self.dropped += 1


class MemoryBus:
    """Delivers each event to the matching subscriptions of this process. Each subscription is the
    bounded buffer: a slow reader loses its oldest events (counted in ``dropped``), the publisher never
    waits."""

    def __init__(self, *, topic_prefix: str = "echat") -> None:
        self.topics = Topics(topic_prefix)
        self._subscriptions = MemoizedSubscriptionSet()

    @property
    def dropped(self) -> int:
        return self._subscriptions.dropped

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        check_topic(topic)
        copied = plain_copy(payload)
        if copied is None:
            # Encoding and decoding again gives subscribers what an MQTT subscriber would get, and a
            # payload that is not JSON fails here, at the publisher.
            copied = decode_payload(encode_payload(payload))
            assert copied is not None
        self._subscriptions.dispatch(Event(topic, copied))

    async def flushed(self) -> None:
        """At once: ``publish`` hands each event to the subscriptions before it returns."""

    @asynccontextmanager
    async def subscribe(
        self, pattern: str, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(check_pattern(pattern), buffer)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.remove(subscription)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._subscriptions.close_all()
