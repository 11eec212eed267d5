"""Shared fixtures: the real PostgreSQL and Mosquitto on 127.0.0.1 (never mocked, never skipped)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

PG_HOST = os.environ.get("ECHAT_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ECHAT_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ECHAT_TEST_PG_USER", "postgres")
MQTT_HOST = os.environ.get("ECHAT_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("ECHAT_TEST_MQTT_PORT", "1883"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """A missing service fails the test with the command that starts it: it is never skipped."""
    if not _reachable(host, port):
        pytest.fail(f"{name} is not reachable on {host}:{port}; run `bash tools/services.sh` to start it")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import asyncpg

    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"echat_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite+aiosqlite:///{os.fspath(tmp_path)}/echat.db"


@pytest.fixture
def mqtt_url() -> str:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    return f"mqtt://{MQTT_HOST}:{MQTT_PORT}"


@pytest.fixture
def topic_prefix() -> str:
    """A unique MQTT topic root so parallel test runs never see each other's events."""
    return f"echat-test-{uuid.uuid4().hex[:8]}"
