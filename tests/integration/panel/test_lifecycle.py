"""Plugin lifecycle: lifespans entered in name order, left in reverse order before the bus and the
engine close; a failing start-up stops only what had started; a lifespan failing to stop does not keep
the others from stopping; what a lifespan yields is the plugin's state for that panel only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import pytest
from sqlalchemy import func, select

from gatewayd.bus.memory import MemoryBus
from gatewayd.store.accounts import Account
from panel.app import create_app
from panel.settings import PanelSettings
from panel.types import PanelRuntime, Plugin, PluginError, PluginState, PluginStateMissing

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
    @asynccontextmanager
    async def lifespan(runtime: PanelRuntime) -> AsyncIterator[str]:
        if fail_start:
            raise RuntimeError(f"{name} cannot start")
        log.append(f"start {name}")
        yield f"{name} state"
        # The engine still serves queries and the stop signal has been raised.
        async with runtime.sessionmaker() as session:
            accounts = (await session.execute(select(func.count()).select_from(Account))).scalar_one()
        log.append(f"stop {name} accounts={accounts} stopping={runtime.stopping.stopping}")
        if fail_stop:
            raise RuntimeError(f"{name} cannot stop")

    return Plugin(name=name, title=f"{name}.title", lifespan=lifespan)


def bus_factory(log: list[str]) -> Callable[[str], MemoryBus]:
    def open_bus(url: str) -> RecordingBus:
        assert url == "memory://"
        return RecordingBus(log)

    return open_bus


@pytest.fixture
async def prepared(settings: PanelSettings, example_on_path: None) -> PanelSettings:
    await prepare_store(settings.database_url)
    return settings


async def test_lifespans_end_in_reverse_order_before_the_bus_closes(prepared: PanelSettings) -> None:
    log: list[str] = []
    plugins = [recording_plugin(name, log) for name in ("gamma", "alpha", "beta")]
    app = create_app(prepared, bus_factory=bus_factory(log), plugins=plugins)
    async with serving(app) as client:
        assert log == ["start alpha", "start beta", "start gamma"]
        assert (await client.get("/static/panel/panel.css")).status_code == 200
        assert client.runtime.stopping.stopping is False
        assert PluginState("beta", str).of(client.runtime) == "beta state"
        runtime = client.runtime
    with pytest.raises(PluginStateMissing):  # a stopped panel holds no plugin state
        PluginState("beta", str).of(runtime)
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
    with pytest.raises(PluginError, match="beta.*lifespan failed to start: beta cannot start"):
        async with serving(app):
            pass
    assert log == ["start alpha", "stop alpha accounts=4 stopping=False", "bus closed"]


async def test_a_lifespan_failing_to_stop_is_logged_and_the_others_still_stop(
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
    assert any("plugin beta: lifespan failed to stop" in record.getMessage() for record in caplog.records)


def test_a_lifespan_must_be_callable() -> None:
    with pytest.raises(PluginError, match="lifespan must be a callable"):
        Plugin(name="broken", title="x", lifespan="later")  # type: ignore[arg-type]


async def test_a_state_of_another_kind_is_refused(prepared: PanelSettings) -> None:
    log: list[str] = []
    app = create_app(prepared, bus_factory=bus_factory(log), plugins=[recording_plugin("alpha", log)])
    async with serving(app) as client:
        with pytest.raises(PluginStateMissing, match="'alpha' holds no int"):
            PluginState("alpha", int).of(client.runtime)
        with pytest.raises(PluginStateMissing, match="'nobody'"):
            PluginState("nobody", str).of(client.runtime)
