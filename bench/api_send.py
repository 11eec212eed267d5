"""MTs accepted per second through the integrator API, and the latency of a single send.

The panel (the API inside it) is served by uvicorn in a child process (``api_send.py serve URL
PORT``) on a scratch PostgreSQL database at this version's schema; this process is the integrators:
``--clients`` concurrent httpx clients each posting batches of ``--batch`` MTs (``POST
/api/v1/messages/batch``, every item to a new Spanish number) back to back for ``--seconds``. Each
batch is one transaction: the MTs through the outbox and one audit record. Then ``--singles`` single
sends (``POST /api/v1/messages``) one after another, each timed. No daemon runs: the MTs stay queued
(what is measured is acceptance, not delivery). Target: at least 5,000 MT/s with batches of 100.

    .venv/bin/python bench/api_send.py [--clients 8] [--batch 100] [--seconds 10] [--singles 500]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.scratch_postgres import scratch_database  # noqa: E402
from gatewayd.bus.memory import MemoryBus  # noqa: E402
from gatewayd.config import BindConfig, CarrierConfig  # noqa: E402
from gatewayd.outbox import OutboxSettings  # noqa: E402
from gatewayd.schema import upgrade  # noqa: E402
from gatewayd.store.apikeys import Scope, create_key  # noqa: E402
from gatewayd.store.base import utcnow  # noqa: E402
from gatewayd.store.engine import create_engine, session_factory  # noqa: E402
from panel.app import create_app  # noqa: E402
from panel.settings import PanelSettings  # noqa: E402
from plugins import auth  # noqa: E402

READY = "api-send: serving"


def _outbox() -> OutboxSettings:
    bind = BindConfig(name="m-1", host="127.0.0.1", port=2775, system_id="echat", password=SecretStr("pw"))
    return OutboxSettings(
        carriers=(CarrierConfig(name="movistar", country="ES", short_codes=("997745",), binds=(bind,)),)
    )


def serve(url: str, port: int) -> None:
    """The child: the panel with the API on ``url``, served on 127.0.0.1:``port``."""
    settings = PanelSettings(database_url=url, secure_cookies=False, outbox=_outbox())
    app = create_app(settings, bus=MemoryBus(), plugins=[auth.plugin])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110  (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)
        print(READY, flush=True)
        await task

    asyncio.run(run())


async def _key(url: str) -> str:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            made = await create_key(
                session,
                name="bench",
                scopes=[Scope.SEND],
                allow=[],
                rate=None,
                created_by="bench",
                now=utcnow(),
            )
        return made.token
    finally:
        await engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _batches(base: str, token: str, batch: int, until: float, numbers: itertools.count[int]) -> int:
    accepted = 0
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        while time.perf_counter() < until:
            items = [{"to": f"+346{next(numbers):08d}", "text": "Hola {telefono}"} for _ in range(batch)]
            response = await client.post("/api/v1/messages/batch", json={"items": items})
            if response.status_code != 201:
                raise SystemExit(f"batch answered {response.status_code}: {response.text[:300]}")
            accepted += response.json()["queued"]
    return accepted


async def _singles(base: str, token: str, count: int, numbers: itertools.count[int]) -> list[float]:
    latencies: list[float] = []
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/messages", json={"to": f"+346{next(numbers):08d}", "text": "x"}
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 201:
                raise SystemExit(f"single send answered {response.status_code}: {response.text[:300]}")
    return latencies


async def drive(args: argparse.Namespace) -> None:
    async with scratch_database() as url:
        await upgrade(url)
        token = await _key(url)
        port = _free_port()
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "serve", url, str(port), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            if READY not in line.decode():
                raise SystemExit(f"the panel did not start: {line!r}")
            base = f"http://127.0.0.1:{port}"
            numbers = itertools.count(1)
            await _batches(base, token, args.batch, time.perf_counter() + 1, numbers)  # warm-up
            started = time.perf_counter()
            until = started + args.seconds
            counts = await asyncio.gather(
                *(_batches(base, token, args.batch, until, numbers) for _ in range(args.clients))
            )
            elapsed = time.perf_counter() - started
            rate = sum(counts) / elapsed
            latencies = sorted(await _singles(base, token, args.singles, numbers))
        finally:
            child.terminate()
            await child.wait()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"batches of {args.batch} from {args.clients} clients for {elapsed:.1f} s: {sum(counts)} MTs accepted"
    )
    print(f"single sends: {len(latencies)}, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(
        f"RESULT mts_per_s={rate:.0f} batch={args.batch} clients={args.clients} "
        f"single_p50_ms={p50:.1f} single_p99_ms={p99:.1f}"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--singles", type=int, default=500)
    asyncio.run(drive(parser.parse_args()))


if __name__ == "__main__":
    main()
