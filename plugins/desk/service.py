"""The desk's assignment service in the panel process: one per running panel, found by its runtime.

The service is created by the plugin's startup hook. Plugins get no shutdown hook, so the periodic
sweep lives as long as the panel's event bus: it ends when the bus closes (the panel's own bus at the
end of its lifespan, or the daemon's when the panel runs inside the daemon).
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
    """``heartbeat``: seconds between keep-alive comments on an idle event stream; the session is
    re-checked at each (a signed-out operator's stream ends)."""

    policy: AssignmentPolicy = AssignmentPolicy()
    heartbeat: float = 15.0


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
        service = AssignmentService(runtime.sessionmaker, runtime.bus, settings.policy)
        key = id(runtime.sessionmaker)
        sweep = asyncio.get_running_loop().create_task(
            _sweep_while_bus_open(runtime, service, settings), name="panel.desk.assignment.sweep_loop"
        )
        _RUNNING[key] = _Running(runtime.sessionmaker, service, settings, sweep)
        sweep.add_done_callback(lambda _: _forget(key, sweep))
        # Whatever waited while no panel was running is handed out now.
        await service.assign()

    return start_assignment


def _forget(key: int, sweep: asyncio.Task[None]) -> None:
    if key in _RUNNING and _RUNNING[key].sweep is sweep:
        del _RUNNING[key]


async def _sweep_while_bus_open(
    runtime: PanelRuntime, service: AssignmentService, settings: DeskSettings
) -> None:
    if runtime.bus is None:
        return
    # A subscription to a topic nobody publishes: it ends when the bus closes.
    async with runtime.bus.subscribe(f"{runtime.bus.topics.prefix}/panel/desk/never") as closing:
        while True:
            try:
                await asyncio.wait_for(closing.get(), timeout=settings.policy.sweep_interval)
            except TimeoutError:
                await service.sweep()
            except StopAsyncIteration:
                return


def _own_topic(event: Event, runtime: PanelRuntime) -> bool:
    return runtime.bus is not None and event.topic.startswith(runtime.bus.topics.prefix + "/")


async def on_mo(event: Event, runtime: PanelRuntime) -> None:
    """An MO was committed: its conversation goes to an operator if nobody holds it yet."""
    if _own_topic(event, runtime):
        await assignment_service(runtime).on_mo_event(event)


# "+/+/mo" is "<prefix>/<short code>/mo" whatever the configured prefix; others' prefixes are ignored.
MO_PATTERN = "+/+/mo"
EVENT_HANDLERS: dict[str, EventHandler] = {MO_PATTERN: on_mo}
