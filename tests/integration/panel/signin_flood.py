"""Clients flooding the panel's sign-in form from a process of their own, so that their own work does
not share the event loop of the gateway they flood (tests/integration/panel/test_login_flood.py,
bench/login_flood.py).

Run as a script: ``python signin_flood.py URL CLIENTS UNIQUE_NAMES`` floods until SIGTERM, prints
``UNDERWAY`` once every client was answered, then the statuses it saw as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

SCRIPT = str(Path(__file__).resolve())
#: The user name the non-unique flood guesses (the seeded administrator's).
ADMIN = "admin"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def attacker(
    client: httpx.AsyncClient,
    number: int,
    unique_names: bool,
    statuses: Counter[str],
    answered: asyncio.Event,
) -> None:
    """Bad sign-ins back to back; ``answered`` once the first is answered."""
    attempt = 0
    while True:
        try:
            page = await client.get("/login", headers={"accept": "text/html"})
            found = _CSRF.search(page.text)
            if found is None:
                statuses[f"get_{page.status_code}"] += 1
                continue
            attempt += 1
            name = f"guess{number}x{attempt}" if unique_names else ADMIN
            form = {"csrf_token": found.group(1), "username": name, "password": f"guess {attempt}"}
            statuses[str((await client.post("/login", data=form)).status_code)] += 1
        except httpx.HTTPError as error:
            statuses[type(error).__name__] += 1
        answered.set()


async def attack(url: str, clients: int, unique_names: bool) -> None:
    """Floods until SIGTERM; prints ``UNDERWAY`` once every client was answered, then the statuses.
    Each client has its own connection and cookies, as separate browsers would."""
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        answered = [asyncio.Event() for _ in range(clients)]
        tasks = []
        for number in range(clients):
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
            tasks.append(
                asyncio.create_task(attacker(client, number, unique_names, statuses, answered[number]))
            )
        await asyncio.gather(*(event.wait() for event in answered))
        print("UNDERWAY", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(dict(statuses)), flush=True)


@contextlib.asynccontextmanager
async def attackers(url: str, clients: int, unique_names: bool) -> AsyncIterator[Counter[str]]:
    """The child process flooding ``url``; the statuses it saw are filled in when the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, url, str(clients), "1" if unique_names else "0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    statuses: Counter[str] = Counter()
    try:
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        if line.strip() != b"UNDERWAY":
            raise RuntimeError(f"the attackers did not start: {line!r}")
        yield statuses
    finally:
        process.send_signal(signal.SIGTERM)
        output = await process.stdout.read()
        await process.wait()
        if output.strip():
            statuses.update(json.loads(output.decode().strip().splitlines()[-1]))


if __name__ == "__main__":
    asyncio.run(attack(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
