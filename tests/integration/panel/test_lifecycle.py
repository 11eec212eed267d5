"""Plugin lifecycle: on_startup in name order, on_shutdown in reverse order before the bus and the
engine close; a failing start-up stops only what had started; a failing shutdown hook does not keep
the others from running."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

import pytest
from sqlalchemy import func, select

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Account
from panel.app import create_app
from panel.runtime import PanelRuntime
from panel.settings import PanelSettings
from plugins import Plugin, PluginError, ShutdownHook, StartupHook

from .conftest import prepare_store, serving


class RecordingBus(MemoryBus):
    """A MemoryBus that notes in the shared log when the panel closes it."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.log.append("bus closed")
        await super().__aexit__(exc_type, exc, tb)


def recording_plugin(
    name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False
) -> Plugin:
    async def start(runtime: PanelRuntime) -> None:
        if fail_start:
            raise RuntimeError(f"{name} cannot start")
        log.append(f"start {name}")

    async def stop(runtime: PanelRuntime) -> None:
        # The engine still serves queries and the stop signal has been raised.
        async with runtime.sessionmaker() as session:
            accounts = (await session.execute(select(func.count()).select_from(Account))).scalar_one()
        log.append(f"stop {name} accounts={accounts} stopping={runtime.stopping.stopping}")
        if fail_stop:
            raise RuntimeError(f"{name} cannot stop")

    startup: StartupHook = start
    shutdown: ShutdownHook = stop
    return Plugin(name=name, title=f"{name}.title", on_startup=startup, on_shutdown=shutdown)


def bus_factory(log: list[str]) -> Callable[[str], MemoryBus]:
    def open_bus(url: str) -> RecordingBus:
        assert url == "memory://"
        return RecordingBus(log)

    return open_bus


@pytest.fixture
async def prepared(settings: PanelSettings, example_on_path: None) -> PanelSettings:
    await prepare_store(settings.database_url)
    return settings


async def test_shutdown_hooks_run_in_reverse_order_before_the_bus_closes(prepared: PanelSettings) -> None:
    log: list[str] = []
    plugins = [recording_plugin(name, log) for name in ("gamma", "alpha", "beta")]
    app = create_app(prepared, bus_factory=bus_factory(log), plugins=plugins)
    async with serving(app) as client:
        assert log == ["start alpha", "start beta", "start gamma"]
        assert (await client.get("/static/panel/panel.css")).status_code == 200
        assert client.runtime.stopping.stopping is False
    assert log[3:] == [
        "stop gamma accounts=4 stopping=True",
        "stop beta accounts=4 stopping=True",
        "stop alpha accounts=4 stopping=True",
        "bus closed",
    ]


async def test_a_failed_start_up_stops_only_the_plugins_that_started(prepared: PanelSettings) -> None:
    log: list[str] = []
    plugins = [
        recording_plugin("alpha", log),
        recording_plugin("beta", log, fail_start=True),
        recording_plugin("gamma", log),
    ]
    app = create_app(prepared, bus_factory=bus_factory(log), plugins=plugins)
    with pytest.raises(PluginError, match="beta.*on_startup failed: beta cannot start"):
        async with serving(app):
            pass
    assert log == ["start alpha", "stop alpha accounts=4 stopping=False", "bus closed"]


async def test_a_failing_shutdown_hook_is_logged_and_the_others_still_run(
    prepared: PanelSettings, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    plugins = [
        recording_plugin("alpha", log),
        recording_plugin("beta", log, fail_stop=True),
        recording_plugin("gamma", log),
    ]
    app = create_app(prepared, bus_factory=bus_factory(log), plugins=plugins)
    with caplog.at_level(logging.ERROR, logger="panel.app"):
        async with serving(app):
            pass
    assert [entry.split(" accounts")[0] for entry in log[3:]] == [
        "stop gamma",
        "stop beta",
        "stop alpha",
        "bus closed",
    ]
    assert any("plugin beta: on_shutdown failed" in record.getMessage() for record in caplog.records)


def test_on_shutdown_must_be_callable() -> None:
    with pytest.raises(PluginError, match="on_shutdown must be an async callable"):
        Plugin(name="broken", title="x", on_shutdown="later")  # type: ignore[arg-type]
