"""The desk's assignment service in the panel process: one per running panel, found by its runtime.

The plugin's startup hook creates the service and starts its periodic sweep; its shutdown hook stops
the sweep, whether the panel runs on its own or inside the daemon (whose bus outlives the panel).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.bus.events import Event
from panel.assignment import AssignmentPolicy, AssignmentService
from panel.runtime import PanelRuntime
from plugins.contract import EventHandler, StartupHook


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


@dataclass(slots=True)
class _Running:
    sessionmaker: async_sessionmaker[AsyncSession]
    service: AssignmentService
    settings: DeskSettings
    sweep: asyncio.Task[None]


_RUNNING: dict[int, _Running] = {}


class DeskNotStarted(RuntimeError):
    pass


def _running(runtime: PanelRuntime) -> _Running:
    found = _RUNNING.get(id(runtime.sessionmaker))
    if found is None or found.sessionmaker is not runtime.sessionmaker:
        raise DeskNotStarted("the desk plugin's startup hook has not run for this panel")
    return found


def assignment_service(runtime: PanelRuntime) -> AssignmentService:
    return _running(runtime).service


def desk_settings(runtime: PanelRuntime) -> DeskSettings:
    return _running(runtime).settings


def startup_hook(settings: DeskSettings) -> StartupHook:
    async def start_assignment(runtime: PanelRuntime) -> None:
        service = AssignmentService(runtime.sessionmaker, runtime.bus, settings.policy, runtime.settings)
        # Whatever waited while no panel was running is handed out now.
        await service.assign()
        sweep = asyncio.get_running_loop().create_task(
            _sweep_loop(service, settings.policy.sweep_interval), name="panel.desk.assignment.sweep_loop"
        )
        _RUNNING[id(runtime.sessionmaker)] = _Running(runtime.sessionmaker, service, settings, sweep)

    return start_assignment


async def stop_assignment(runtime: PanelRuntime) -> None:
    """The shutdown hook: the sweep ends before the panel's engine and bus close."""
    running = _RUNNING.pop(id(runtime.sessionmaker), None)
    if running is None or running.sessionmaker is not runtime.sessionmaker:
        return
    running.sweep.cancel()
    await asyncio.wait([running.sweep])


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


# "+/+/mo" is "<prefix>/<short code>/mo" whatever the configured prefix; others' prefixes are ignored.
MO_PATTERN = "+/+/mo"
ACCOUNT_PATTERN = "+/account/+/changed"
EVENT_HANDLERS: dict[str, EventHandler] = {MO_PATTERN: on_mo, ACCOUNT_PATTERN: on_account_changed}
