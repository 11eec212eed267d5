"""A running simulator on ephemeral ports and an HTTP client of its control API."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
