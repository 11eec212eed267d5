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
)

_JSON_SCALARS = (str, int, bool, type(None))


def plain_copy(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The payload as JSON would bring it back (with ``"v"``), built without JSON, when it is flat:
    string keys and str / int / bool / None / finite float values of exactly those types (the
    daemon's own events). None when only the JSON round trip gives the right answer (nested values,
    subclasses such as enums, values JSON cannot carry)."""
    for key, value in payload.items():
        kind = type(value)
        if type(key) is not str or not (kind in _JSON_SCALARS or (kind is float and math.isfinite(value))):
            return None
    return dict(payload) if "v" in payload else {"v": EVENT_VERSION, **payload}


class MemoryBus:
    """Delivers each event to the matching subscriptions of this process. Each subscription is the
    bounded buffer: a slow reader loses its oldest events (counted in ``dropped``), the publisher never
    waits."""

    def __init__(self, *, topic_prefix: str = "echat") -> None:
        self.topics = Topics(topic_prefix)
        self._subscriptions = SubscriptionSet()

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

    @asynccontextmanager
    async def subscribe(self, pattern: str, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
                        ) -> AsyncIterator[Subscription]:
        subscription = Subscription(check_pattern(pattern), buffer)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.remove(subscription)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._subscriptions.close_all()
