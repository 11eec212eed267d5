"""Fixtures for the daemon's integration tests: the simulator, a database, a store (the helpers that
make a config and run a daemon: ``helpers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gatewayd.schema import upgrade
from gatewayd.store.engine import create_engine
from gatewayd.store.store import Store
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import simulator_config


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(simulator_config()) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each pipeline test runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The store of a freshly migrated database (SQLite and PostgreSQL, as ``database_url``)."""
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        yield Store.for_engine(engine)
    finally:
        await engine.dispose()
