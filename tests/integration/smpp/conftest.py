"""Fixtures of the SMPP integration tests: our SMSCServer with a recording handler, and a raw SMSC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smpp.aio import SMSCServer
from tests.integration.smpp.smpp_peers import RawSMSC, RecordingHandler


@pytest.fixture
async def smsc() -> AsyncIterator[tuple[SMSCServer, RecordingHandler]]:
    handler = RecordingHandler()
    async with SMSCServer(handler, deliver_window=5) as server:
        yield server, handler


@pytest.fixture
async def raw_smsc() -> AsyncIterator[RawSMSC]:
    server = RawSMSC()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
