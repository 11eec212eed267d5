"""The desk's assignment service in the panel process: one per running panel, kept as the plugin's
typed state (`DESK`).

The plugin's lifespan creates the service and starts its periodic sweep, and stops the sweep when the
panel stops, whether the panel runs on its own or inside the daemon (whose bus outlives the panel).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

from gatewayd.assignment import AssignmentPolicy, AssignmentService
from gatewayd.bus.events import Event
from gatewayd.diversion import DiversionCache
from gatewayd.outbox import Outbox
from panel.presence import session_idle
from panel.types import EventHandler, PanelRuntime, PluginState


@dataclass(frozen=True, slots=True)
class DeskSettings:
    """``heartbeat``: seconds between keep-alive comments on an idle event stream; at each the session
    is re-checked (a signed-out operator's stream ends) and the desk marked live, so the policy's
    ``presence_grace`` must be longer."""

    policy: AssignmentPolicy = AssignmentPolicy()
    heartbeat: float = 15.0

    def __post_init__(self) -> None:
        if self.policy.presence_grace.total_seconds() <= self.heartbeat:
            raise ValueError("the presence grace must be longer than the desk's heartbeat")


@dataclass(frozen=True, slots=True)
class Desk:
    """The desk's state in one running panel: assignment, settings, and the outbox its replies and
    pushes go through."""

    service: AssignmentService
    settings: DeskSettings
    outbox: Outbox


DESK = PluginState("desk", Desk)


def assignment_service(runtime: PanelRuntime) -> AssignmentService:
    return DESK.of(runtime).service


def desk_settings(runtime: PanelRuntime) -> DeskSettings:
    return DESK.of(runtime).settings


def desk_outbox(runtime: PanelRuntime) -> Outbox:
    return DESK.of(runtime).outbox


def desk_lifespan(settings: DeskSettings) -> Callable[[PanelRuntime], AbstractAsyncContextManager[Desk]]:
    @asynccontextmanager
    async def run_desk(runtime: PanelRuntime) -> AsyncIterator[Desk]:
        policy = _policy(settings.policy, runtime)
        if policy.presence_grace.total_seconds() <= settings.heartbeat:
            heartbeat = settings.heartbeat
            raise ValueError(f"[assignment] presence_grace must exceed the desk's heartbeat, {heartbeat} s")
        services = runtime.settings.outbox.services
        diversion = DiversionCache.for_services((item.name, item.callcentre) for item in services)
        service = AssignmentService(
            runtime.sessionmaker, runtime.bus, policy, readers=runtime.readers, diversion=diversion
        )
        # Whatever waited while no panel was running is handed out now.
        await service.refresh_diversion()
        await service.assign()
        sweep = asyncio.get_running_loop().create_task(
            _sweep_loop(service, policy.sweep_interval), name="panel.desk.assignment.sweep_loop"
        )
        try:
            outbox = Outbox(
                runtime.settings.outbox,
                sessions=runtime.sessionmaker,
                bus=runtime.bus,
                inserts=runtime.store.mt_inserts,
            )
            yield Desk(service, settings, outbox)
        finally:  # the sweep ends before the panel's engine and bus close
            sweep.cancel()
            await asyncio.wait([sweep])

    return run_desk


def _policy(policy: AssignmentPolicy, runtime: PanelRuntime) -> AssignmentPolicy:
    """The desk's policy with the panel's session idle time and, when the panel was started from a
    configuration, its ``[assignment]`` grace and sweep: the same presence rule as the daemon's."""
    panel = runtime.settings
    policy = replace(policy, session_idle=session_idle(panel))
    if panel.presence_grace_seconds is not None:
        policy = replace(policy, presence_grace=timedelta(seconds=panel.presence_grace_seconds))
    if panel.assignment_sweep_seconds is not None:
        policy = replace(policy, sweep_interval=panel.assignment_sweep_seconds)
    if panel.callcentre_pool is not None:
        policy = replace(policy, callcentre_pool=panel.callcentre_pool)
    return policy


async def _sweep_loop(service: AssignmentService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await service.sweep()


def _own_topic(event: Event, runtime: PanelRuntime) -> bool:
    return runtime.bus is not None and event.topic.startswith(runtime.bus.topics.prefix + "/")


async def on_mo(event: Event, runtime: PanelRuntime) -> None:
    """An MO was committed: its conversation goes to an operator if nobody holds it yet."""
    if _own_topic(event, runtime):
        await assignment_service(runtime).on_mo_event(event)


async def on_account_changed(event: Event, runtime: PanelRuntime) -> None:
    """An operator was signed out, locked or left: if they are no longer at the desk, what they hold
    goes back to the queue now rather than at the next sweep."""
    if _own_topic(event, runtime):
        await assignment_service(runtime).on_account_event(event)


async def on_diversion(event: Event, runtime: PanelRuntime) -> None:
    """An admin switched a service's call-centre diversion (here or in another panel): this panel's
    assignment reads the switches again and hands out what waits."""
    if _own_topic(event, runtime):
        await assignment_service(runtime).on_diversion_event(event)


# "+/+/mo" is "<prefix>/<short code>/mo" whatever the configured prefix; others' prefixes are ignored.
MO_PATTERN = "+/+/mo"
ACCOUNT_PATTERN = "+/account/+/changed"
DIVERSION_PATTERN = "+/service/+/diversion"
EVENT_HANDLERS: dict[str, EventHandler] = {
    MO_PATTERN: on_mo,
    ACCOUNT_PATTERN: on_account_changed,
    DIVERSION_PATTERN: on_diversion,
}
