"""What the panel knows of the daemons' binds: the latest status event (``<prefix>/status``) of
each daemon instance.

A daemon publishes it on every bind change, every ``STATUS_INTERVAL`` seconds and when a panel asks
(``<prefix>/status/request``, sent as this panel starts). Several daemons share the configured binds
(``docs/CLUSTER.md``): the binds up are what they have up together. A panel that heard none lately
(no daemon, no bus) says "unknown" rather than guess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gatewayd.bus.base import Subscription
from gatewayd.daemon import STATUS_INTERVAL
from panel.types import PanelRuntime, PluginState

#: A status older than this is no longer believed: three intervals missed.
STALE_AFTER = 3 * STATUS_INTERVAL


@dataclass(frozen=True, slots=True)
class BindsUp:
    """Binds up and configured per carrier, as of the last status heard."""

    up: Mapping[str, int]
    configured: Mapping[str, int]

    @property
    def total_up(self) -> int:
        return sum(self.up.values())

    @property
    def total(self) -> int:
        return sum(self.configured.values())


class DaemonStatus:
    """The latest status event heard by this panel from each daemon, and when (a monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heard: dict[str, tuple[BindsUp, float]] = {}

    def heard(self, payload: Mapping[str, object]) -> None:
        up, configured = payload.get("binds_up"), payload.get("binds")
        if not isinstance(up, Mapping) or not isinstance(configured, Mapping):
            return
        binds = BindsUp(
            {str(carrier): int(count) for carrier, count in up.items()},
            {str(carrier): int(count) for carrier, count in configured.items()},
        )
        self._heard[str(payload.get("instance", ""))] = (binds, self._clock())

    def binds(self) -> BindsUp | None:
        """The binds up in every daemon heard within ``STALE_AFTER`` (never more than configured: a
        daemon that just stopped may not have said so), or None when none was heard."""
        now = self._clock()
        fresh = [binds for binds, at in self._heard.values() if now - at <= STALE_AFTER]
        if not fresh:
            return None
        if len(fresh) == 1:
            return fresh[0]
        configured: dict[str, int] = {}
        up: dict[str, int] = {}
        for binds in fresh:
            for carrier, count in binds.configured.items():
                configured[carrier] = max(configured.get(carrier, 0), count)
            for carrier, count in binds.up.items():
                up[carrier] = up.get(carrier, 0) + count
        return BindsUp(
            {carrier: min(count, configured.get(carrier, count)) for carrier, count in up.items()}, configured
        )

    async def follow_loop(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.heard(event.payload)


DAEMON_STATUS = PluginState("home", DaemonStatus)


@asynccontextmanager
async def follow_daemon_status(runtime: PanelRuntime) -> AsyncIterator[DaemonStatus]:
    status = DaemonStatus()
    if runtime.bus is None:
        yield status
        return
    async with runtime.bus.subscribe(runtime.bus.topics.status(), buffer=16) as subscription:
        task = asyncio.get_running_loop().create_task(
            status.follow_loop(subscription), name="panel.home.status_loop"
        )
        # Subscribed first, then asked: the daemon answers now instead of at its next interval.
        await runtime.bus.publish(runtime.bus.topics.status_request(), {})
        try:
            yield status
        finally:
            task.cancel()
            await asyncio.wait([task])
