"""A rolling upgrade as docs/UPGRADE.md prescribes it: the database is migrated while daemons of the
previous release keep working, then the daemons are restarted on the new release one by one.

"Release N" is this repository at :data:`RELEASE_N`, extracted with ``git archive`` and run with
``PYTHONPATH`` pointing at it (the same virtualenv: the dependencies did not change in between). It
migrates a fresh PostgreSQL database to its own head and runs ``gatewayd run``; MOs arrive at the
simulator and MTs are queued by a producer of release N (the panels are upgraded last) before,
while and after ``gatewayd migrate`` of this tree upgrades the schema. Then the daemon of release N
stops (SIGTERM), this tree's starts, and traffic goes on. Every MO is stored once, every MT is
delivered, the SMSC never got a temporary error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text

from gatewayd.schema import head_revision
from gatewayd.store.engine import create_engine, session_factory
from simulator.core import Simulator
from tests.integration.gatewayd.faults import queue_many, subscriber
from tests.integration.gatewayd.helpers import MOVISTAR, MOVISTAR_SHORT_CODE, write_config
from tests.waiting import eventually

REPOSITORY = Path(__file__).resolve().parents[3]
#: Release N: main before the cluster work of issue 15 (its last migration is 0019). This tree's
#: migrations after it (0020: the daemons and their bind leases) run under release N's daemon.
RELEASE_N = "1bc2130cea1a2d69063b121fc7e7ca707666d6e8"

#: Queues MTs the way release N's producers do (its own ``queue_mts``), run with release N's code.
PRODUCER = """
import asyncio, sys
from datetime import UTC, datetime

from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.queue import queue_mts
from gatewayd.store.mt.values import NewMT


async def main(url: str, carrier: str, source: str, tag: str, count: int) -> None:
    engine = create_engine(url)
    mts = [
        NewMT(kind=MTKind.PUSH, carrier=carrier, source=source, destination=f"3460{index % 20:07d}",
              text=f"{tag} {index}", request_receipt=True)
        for index in range(count)
    ]
    try:
        async with session_factory(engine)() as session, session.begin():
            await queue_mts(session, mts, datetime.now(UTC))
    finally:
        await engine.dispose()


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
"""


def extract_release(commit: str, directory: Path) -> Path:
    """This repository's tree at ``commit`` in ``directory`` (``git archive | tar -x``)."""
    directory.mkdir()
    exists = ["git", "-C", str(REPOSITORY), "cat-file", "-e", f"{commit}^{{commit}}"]
    known = subprocess.run(exists, capture_output=True, timeout=60, check=False)
    assert known.returncode == 0, f"release N ({commit}) is not in this clone: `git fetch --unshallow` first"
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", commit], capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True, timeout=60)
    return directory


async def python(tree: Path, *args: str, log: Path) -> asyncio.subprocess.Process:
    """``python args`` with ``tree``'s packages first on the path (ahead of the editable install)."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=tree, env=environment, stdout=output, stderr=output
        )


def whole(log: Path) -> str:
    return log.read_text(errors="replace")


def tail(log: Path) -> str:
    return whole(log)[-3000:]


async def finished(process: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(120):
        code = await process.wait()
    assert code == 0, tail(log)


@asynccontextmanager
async def daemon(tree: Path, config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await python(tree, "-m", "echat", "run", "--config", str(config), log=log)
    try:
        yield process
        process.send_signal(signal.SIGTERM)  # the clean stop of a rolling restart: drain, unbind
        await finished(process, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_release_n_keeps_working_while_this_release_migrates_then_restarts_on_it(
    tmp_path: Path, pg_url: str, simulator: Simulator
) -> None:
    release_n = extract_release(RELEASE_N, tmp_path / "release-n")
    (tmp_path / "producer.py").write_text(PRODUCER, encoding="utf-8")
    config = write_config(tmp_path / "gatewayd.toml", pg_url, simulator)
    log = tmp_path / "upgrade.log"
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    counters = simulator.carrier(MOVISTAR).counters
    mo_sent: list[str] = []
    mt_queued: list[str] = []

    def inject_mos(tag: str, count: int) -> None:
        for index in range(count):
            mo_sent.append(f"{tag} {index}")
            simulator.inject_mo(MOVISTAR, "+" + subscriber(index % 20), MOVISTAR_SHORT_CODE, mo_sent[-1])

    async def queue_with_release_n(tag: str, count: int) -> None:
        producer = await python(
            release_n,
            str(tmp_path / "producer.py"),
            pg_url,
            MOVISTAR,
            MOVISTAR_SHORT_CODE,
            tag,
            str(count),
            log=log,
        )
        await finished(producer, log)
        mt_queued.extend(f"{tag} {index}" for index in range(count))

    async def everything_through() -> bool:
        async with sessions() as session:  # plain SQL: the columns both releases have
            stored = (await session.execute(text("SELECT text FROM mo_messages"))).scalars().all()
            delivered = (
                (await session.execute(text("SELECT text FROM mt_messages WHERE status = 'delivered'")))
                .scalars()
                .all()
            )
        assert len(stored) == len(set(stored)), "an MO stored twice"
        return set(stored) == set(mo_sent) and set(delivered) == set(mt_queued)

    async def schema_version() -> str:
        async with sessions() as session:
            return str((await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())

    try:
        await finished(
            await python(release_n, "-m", "echat", "migrate", "--config", str(config), log=log), log
        )
        version_n = await schema_version()
        head = head_revision()
        assert version_n != head, f"this tree has no migration after release N ({version_n})"

        async with daemon(release_n, config, log):
            inject_mos("before mo", 30)
            await queue_with_release_n("before mt", 30)
            await eventually(everything_through, within=60, what="traffic through release N")

            # the migration of this release, while release N's daemon takes MOs and sends MTs
            migrate = await python(REPOSITORY, "-m", "echat", "migrate", "--config", str(config), log=log)
            during = 0
            while migrate.returncode is None:
                inject_mos(f"during mo {during}", 5)
                await queue_with_release_n(f"during mt {during}", 5)
                during += 1
                try:
                    await asyncio.wait_for(asyncio.shield(migrate.wait()), 0.05)
                except TimeoutError:
                    pass
            await finished(migrate, log)
            assert during >= 1
            assert await schema_version() == head

            inject_mos("after mo", 30)
            await queue_with_release_n("after mt", 30)
            await eventually(
                everything_through, within=60, what="traffic through release N on the new schema"
            )

        # the rolling restart: this release's daemon takes over (the panels, release N, still queue)
        async with daemon(REPOSITORY, config, log):
            inject_mos("restarted mo", 30)
            await queue_with_release_n("restarted mt", 20)
            await queue_many(
                sessions, MOVISTAR, MOVISTAR_SHORT_CODE, [f"new mt {index}" for index in range(20)]
            )
            mt_queued.extend(f"new mt {index}" for index in range(20))
            await eventually(everything_through, within=60, what="traffic through this release")

        assert counters.mo_failed == 0 and counters.redeliveries == 0, "the SMSC got an error for an MO"
        assert "Traceback" not in whole(log)
    finally:
        await engine.dispose()
