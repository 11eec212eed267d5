"""A running simulator on ephemeral ports and an HTTP client of its control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from simulator import Simulator
from tests.integration.simulator.simharness import make_config


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(make_config()) as running:
        yield running


@pytest.fixture
async def api(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    assert simulator.control_url is not None
    async with httpx.AsyncClient(base_url=simulator.control_url, timeout=10.0) as client:
        yield client


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    (tmp_path / "traces").mkdir()
    return tmp_path / "traces"


@pytest.fixture
async def tracing_simulator(trace_dir: Path) -> AsyncIterator[Simulator]:
    """A running simulator whose control API writes its trace files in ``trace_dir``."""
    async with Simulator(make_config().model_copy(update={"trace_dir": str(trace_dir)})) as running:
        yield running
