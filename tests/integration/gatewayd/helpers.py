"""Helpers of the daemon's integration tests: the simulator's carriers, a config pointing at them, a
running daemon."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

from gatewayd.config import Config, load_config
from gatewayd.daemon import Daemon
from gatewayd.schema import upgrade
from simulator.core import Simulator
from simulator.profiles import CarrierProfile, DelayDistribution, ReceiptProfile, SimulatorConfig

MOVISTAR = "movistar"
VODAFONE = "vodafone"
MOVISTAR_SHORT_CODE = "997745"
VODAFONE_SHORT_CODE = "795500"


def simulator_config(*, receipt_delay: float = 0.05, tps: float | None = None) -> SimulatorConfig:
    receipts = ReceiptProfile(delay=DelayDistribution(kind="fixed", seconds=receipt_delay))
    return SimulatorConfig(
        carriers=(
            CarrierProfile(
                name=MOVISTAR,
                country="ES",
                port=0,
                system_id="echat",
                password="secret1",
                short_codes=(MOVISTAR_SHORT_CODE,),
                receipts=receipts,
                tps=tps,
            ),
            CarrierProfile(
                name=VODAFONE,
                country="ES",
                port=0,
                system_id="echat",
                password="secret2",
                short_codes=(VODAFONE_SHORT_CODE,),
                receipts=receipts,
                tps=tps,
            ),
        ),
        control_port=None,
        seed=7,
    )


def write_config(
    path: Path,
    database_url: str,
    simulator: Simulator,
    *,
    bus_url: str = "memory://",
    topic_prefix: str = "echat",
    binds_per_carrier: int = 1,
    window: int = 50,
    extra_daemon: str = "",
    ports: dict[str, int] | None = None,
    response_timeout: float = 5.0,
    reassembly_timeout: float = 2.0,
    extra: str = "",
    quiet_hours: str = "off",
    quirks: dict[str, str] | None = None,
) -> Path:
    """A gatewayd TOML file for the simulator's carriers (``ports`` overrides a carrier's port: a proxy;
    ``quirks`` a carrier's ``[carriers.quirks]`` lines)."""
    ports = ports or {}
    quirks = quirks or {}
    carriers = []
    for name, code, password in (
        (MOVISTAR, MOVISTAR_SHORT_CODE, "secret1"),
        (VODAFONE, VODAFONE_SHORT_CODE, "secret2"),
    ):
        port = ports.get(name, simulator.port(name))
        binds = "".join(
            f"""
[[carriers.binds]]
name = "{name}-{index}"
host = "127.0.0.1"
port = {port}
window = {window}
tps = 100000
response_timeout = {response_timeout}
enquire_link_interval = 5
"""
            for index in range(1, binds_per_carrier + 1)
        )
        carriers.append(f"""
[[carriers]]
name = "{name}"
country = "ES"
short_codes = ["{code}"]
system_id = "echat"
password = "{password}"
long_message = "udh8"
{f"[carriers.quirks]{chr(10)}{quirks[name]}{chr(10)}" if name in quirks else ""}{binds}""")
    text = f"""
[database]
url = "{database_url}"

[bus]
url = "{bus_url}"
topic_prefix = "{topic_prefix}"

[metrics]
enabled = false

# pushes leave at any hour in these tests (the quiet hours' own: test_outbox_quiet_hours.py)
[quiet_hours]
default = "{quiet_hours}"

[daemon]
instance = "gatewayd-test"
mt_retry_backoff_initial = 0.2
mt_retry_backoff_max = 1.0
reassembly_timeout = {reassembly_timeout}
{extra_daemon}
{"".join(carriers)}
[[services]]
name = "chat-movistar"
short_code = "{MOVISTAR_SHORT_CODE}"

[[services]]
name = "chat-vodafone"
short_code = "{VODAFONE_SHORT_CODE}"
{extra}"""
    path.write_text(text, encoding="utf-8")
    return path


def make_config(tmp_path: Path, database_url: str, simulator: Simulator, **options: object) -> Config:
    path = write_config(tmp_path / "gatewayd.toml", database_url, simulator, **options)
    return load_config(path, environ={})


@contextlib.asynccontextmanager
async def running_daemon(config: Config, *, migrate: bool = True, binds_up: int = 2) -> AsyncIterator[Daemon]:
    """A daemon running in this event loop, ready with ``binds_up`` binds bound; stopped cleanly after."""
    if migrate:
        await upgrade(config.database.url)
    daemon = Daemon(config, poll_interval=0.2)
    task = asyncio.create_task(daemon.run(), name="test.daemon")
    try:
        async with asyncio.timeout(15):
            while not daemon.ready.is_set() or daemon.binds is None or daemon.binds.binds_up() < binds_up:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield daemon
    finally:
        daemon.stop()
        async with asyncio.timeout(30):
            await task


class Statements:
    """What the engine's connections send to PostgreSQL (asyncpg's query logger, from their connect)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        #: (statement, its parameters), in the order sent
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __enter__(self) -> Statements:
        event.listen(Pool, "connect", self._log)
        return self

    def __exit__(self, *exc_info: object) -> None:
        event.remove(Pool, "connect", self._log)

    def _log(self, dbapi_connection: Any, _: object) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._record)

    def _record(self, record: Any) -> None:
        self.sent.append(record.query)
        self.calls.append((record.query, tuple(record.args or ())))
