"""A daemon starting on a PostgreSQL server with autovacuum off says so in its log (the outbox's dead
rows would pile up and slow the claims by the hour); on a server that vacuums, and on SQLite, nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text

from gatewayd.logging import EventFormatter
from gatewayd.store.engine import create_engine, is_sqlite
from simulator.core import Simulator
from tests.integration.gatewayd.helpers import make_config, running_daemon

pytestmark = pytest.mark.integration


async def server_autovacuum(url: str) -> str | None:
    if is_sqlite(url):
        return None
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return str((await connection.execute(text("SHOW autovacuum"))).scalar_one())
    finally:
        await engine.dispose()


async def test_a_daemon_warns_when_the_server_does_not_vacuum(
    tmp_path: Path, database_url: str, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_daemon(make_config(tmp_path, database_url, simulator)):
        pass
    formatter = EventFormatter()
    lines = [formatter.format(record) for record in caplog.records if record.levelno == logging.WARNING]
    warnings = [line for line in lines if "database.autovacuum_off" in line]
    expected = await server_autovacuum(database_url)
    if expected is None or expected == "on":
        assert warnings == []
    else:
        assert len(warnings) == 1 and "turn autovacuum on" in warnings[0], warnings
