"""MO intake with webhooks: does a subscription, or a dead receiver, slow the MO pipeline down?

The daemon against the bundled simulator (in its own process) over 127.0.0.1, on PostgreSQL. After a
warm-up that creates the subscribers, the same numbers send MOs in three runs, each timed from the bind
to the last deliver_sm_resp (as ``gatewayd_throughput.py``'s ``mo_steady_per_s``):

  * ``none``: no subscription (the enqueue hook costs a dictionary look-up);
  * ``healthy``: one subscription to ``mo.received`` at a receiver (its own process) answering 204 at
    once; also the rate its deliveries were drained at, from the bind to the last one delivered;
  * ``dead``: one subscription whose receiver accepts connections and never answers (every post
    waits for the time-out: the worst a receiver can do).

With ``--backlog N`` it also times a claim (median of 50, rolled back) with an empty queue and with N
deliveries already queued for a dead endpoint (2,000 clients, their heads in backoff, the rest waiting
behind them) beside 64 due ones of a healthy subscription: ``claim_ms_empty`` and ``claim_ms_backlog``
should be alike, a claim reading due heads only.

Run: ``.venv/bin/python bench/webhooks_intake.py`` (``--mo N``, ``--backlog N``). Ends with one
``RESULT ...`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd_throughput import RemoteSimulator, daemon_config, poll_until, running  # noqa: E402
from scratch_postgres import scratch_database  # noqa: E402
from sqlalchemy import delete, func, select, text  # noqa: E402

from gatewayd.config import Config, WebhooksConfig  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.engine import create_engine  # noqa: E402
from gatewayd.store.store import Store  # noqa: E402
from gatewayd.store.webhooks import DeliveryState, WebhookDelivery, WebhookSubscription  # noqa: E402
from gatewayd.webhooks.subscriptions import (  # noqa: E402
    SubscriptionInput,
    check_subscription,
    create_subscription,
)

BINDS = 4


def receiver_process(connection: Connection, answer: bool) -> None:
    asyncio.run(_receiver_main(connection, answer))


async def _receiver_main(connection: Connection, answer: bool) -> None:
    """Answers every POST with 204 (``answer``), or reads requests and never answers."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if answer:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    connection.send(server.sockets[0].getsockname()[1])
    await asyncio.get_running_loop().run_in_executor(None, connection.recv)  # until told to stop


class RemoteReceiver:
    def __init__(self, answer: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=receiver_process, args=(child, answer), daemon=True)

    async def __aenter__(self) -> int:
        self._process.start()
        port: int = await asyncio.get_running_loop().run_in_executor(None, self._connection.recv)
        return port

    async def __aexit__(self, *exc_info: object) -> None:
        self._connection.send("stop")
        self._process.join(10)


async def subscribe(url: str, receiver_port: int | None) -> None:
    """One subscription to mo.received at the receiver (none when None); earlier ones and their
    deliveries removed."""
    engine = create_engine(url)
    try:
        async with Store.for_engine(engine).transaction() as session:
            await session.execute(delete(WebhookDelivery))
            await session.execute(delete(WebhookSubscription))
            if receiver_port is not None:
                given = SubscriptionInput("bench", f"http://127.0.0.1:{receiver_port}/hook", ["mo.received"])
                allow = [f"127.0.0.1:{receiver_port}"]
                checked = await check_subscription(given, allow)
                await create_subscription(session, checked, by="bench", now=datetime.now(UTC))
    finally:
        await engine.dispose()


async def intake(
    simulator: RemoteSimulator, config: Config, count: int, prefix: str, *, drain: bool = False
) -> tuple[float, float | None]:
    """MOs per second from the bind to the last answer; with ``drain``, deliveries delivered per second
    from the bind to the last one."""
    before = (await simulator.call("counters"))["mo_delivered"]
    await simulator.call("inject", prefix, count)

    async def all_acknowledged() -> bool:
        return bool((await simulator.call("counters"))["mo_delivered"] - before >= count)

    drained = None
    async with running(config, BINDS) as daemon:
        started = time.perf_counter()
        finished = await poll_until(all_acknowledged, 0.01)
        if drain:
            assert daemon.store is not None
            store = daemon.store

            async def all_delivered() -> bool:
                async with store.sessions() as session:
                    statement = select(func.count()).where(WebhookDelivery.state == DeliveryState.DELIVERED)
                    return int(await session.scalar(statement) or 0) >= count

            drained = count / (await poll_until(all_delivered, 0.05) - started)
    assert (await simulator.call("counters"))["mo_failed"] == 0
    return count / (finished - started), drained


BACKLOG_CLIENTS = 2000
HEALTHY, DEAD = 1001, 1002


async def queue_backlog(url: str, healthy: int, dead: int) -> None:
    """``healthy`` due heads of their own clients; ``dead`` rows of a dead endpoint: one head per client
    in backoff, the rest waiting (as the enqueue and the worker leave them)."""
    engine = create_engine(url)
    try:
        async with Store.for_engine(engine).transaction() as session:
            await session.execute(delete(WebhookDelivery))
            await session.execute(
                text(
                    "INSERT INTO webhook_deliveries (subscription_id, event, ordering_key, payload, state,"
                    " attempts, next_attempt_at, created_at)"
                    " SELECT :subscription, 'mo.received', 'c' || (n % :clients), '{}',"
                    " CASE WHEN n < :clients THEN 'pending' ELSE 'waiting' END, 0,"
                    " now() + CASE WHEN :delayed THEN interval '1 hour' ELSE interval '0' END, now()"
                    " FROM generate_series(0, :rows - 1) AS n"
                ),
                [
                    {"subscription": HEALTHY, "clients": healthy, "rows": healthy, "delayed": False},
                    {"subscription": DEAD, "clients": BACKLOG_CLIENTS, "rows": dead, "delayed": True},
                ],
            )
        async with engine.connect() as connection:
            await connection.execute(text("ANALYZE webhook_deliveries"))
    finally:
        await engine.dispose()


async def claim_ms(url: str, backlog: int) -> float:
    """The median time of a claim of both subscriptions' slots (rolled back: the queue stays as it is)."""
    await queue_backlog(url, 64, backlog)
    engine = create_engine(url)
    store = Store.for_engine(engine)
    timings = []
    try:
        for _ in range(50):
            async with store.sessions() as session, session.begin() as transaction:
                now = datetime.now(UTC)
                started = time.perf_counter()
                claimed = await store.webhook_queue.claim(
                    session, {HEALTHY: 64, DEAD: 64}, now, now + timedelta(seconds=60)
                )
                timings.append((time.perf_counter() - started) * 1000)
                assert len(claimed) == 64
                await transaction.rollback()
    finally:
        await engine.dispose()
    return statistics.median(timings)


def with_webhooks(config: Config, port: int) -> Config:
    webhooks = WebhooksConfig(allow=(f"127.0.0.1:{port}",), timeout=10.0, poll_interval=0.1)
    return config.model_copy(update={"webhooks": webhooks})


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        async with scratch_database() as url, RemoteSimulator() as simulator:
            await upgrade(url)
            config = daemon_config(Path(directory), url, simulator.port, BINDS)
            await intake(simulator, config, args.mo, "warm-up")  # creates the subscribers
            figures["none_mo_per_s"], _ = await intake(simulator, config, args.mo, "none")
            async with RemoteReceiver(answer=True) as port:
                await subscribe(url, port)
                figures["healthy_mo_per_s"], drained = await intake(
                    simulator, with_webhooks(config, port), args.mo, "healthy", drain=True
                )
                assert drained is not None
                figures["healthy_delivered_per_s"] = drained
            async with RemoteReceiver(answer=False) as port:
                await subscribe(url, port)
                figures["dead_mo_per_s"], _ = await intake(
                    simulator, with_webhooks(config, port), args.mo, "dead"
                )
            if args.backlog:
                figures["claim_ms_empty"] = await claim_ms(url, 0)
                figures["claim_ms_backlog"] = await claim_ms(url, args.backlog)
    for key, value in figures.items():
        print(f"{key:26s} {value:9.1f}")
    print("RESULT " + " ".join(f"pg_{key}={value:.1f}" for key, value in figures.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mo", type=int, default=20_000, help="MOs per run")
    parser.add_argument("--backlog", type=int, default=0, help="deliveries queued before timing a claim")
    asyncio.run(main(parser.parse_args()))
