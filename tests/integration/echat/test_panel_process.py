"""``gatewayd panel`` as systemd runs it: SIGTERM ends it within its drain time whatever the broker
does -- gone, flapping, or silent (a dead link: the connection stays, nothing answers) -- with
operators' desk streams open, and while its subscriptions wait for a broker that never answers.

The drain time is the panel's own budgets: open responses get ``GRACEFUL_SHUTDOWN_SECONDS``, a broker
``ANSWER_TIMEOUT`` to answer. A panel starting against a silent broker used to wait for aiomqtt's
default 10 s before it could even begin to stop."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gatewayd.bus.mqtt import ANSWER_TIMEOUT
from panel.serve import GRACEFUL_SHUTDOWN_SECONDS
from tests.integration.echat.helpers import Child, MuteBroker, gatewayd, write_config
from tests.integration.gatewayd.proxy import TCPProxy

DRAIN_SECONDS = GRACEFUL_SHUTDOWN_SECONDS + ANSWER_TIMEOUT
OPERATOR, PASSWORD = "olga", "a good long password"
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def prepared_config(folder: Path, database_url: str, bus_url: str) -> Path:
    config = write_config(folder, database_url, bus_url=bus_url, panel_listen="127.0.0.1:0")
    assert gatewayd("migrate", "--config", str(config)).returncode == 0
    added = gatewayd(
        "user",
        "add",
        OPERATOR,
        "--role",
        "operator",
        "--password-stdin",
        "--config",
        str(config),
        input=PASSWORD,
    )
    assert added.returncode == 0, added.stderr
    return config


async def panel_url(panel: Child) -> str:
    line = await asyncio.to_thread(panel.stdout.until, "panel on ")
    found = re.search(r"(http://\S+)/", line)
    assert found is not None, line
    return found.group(1)


async def open_desk_streams(stack: AsyncExitStack, url: str, count: int) -> None:
    """The operator signed in, with ``count`` desk event streams open (each has said it is ready)."""
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
    page = await client.get("/login", headers={"accept": "text/html"})
    found = CSRF.search(page.text)
    assert found is not None
    form = {"csrf_token": found.group(1), "username": OPERATOR, "password": PASSWORD}
    assert (await client.post("/login", data=form)).status_code == 303
    for _ in range(count):
        stream = await stack.enter_async_context(client.stream("GET", "/desk/events"))
        assert stream.status_code == 200
        assert await anext(stream.aiter_lines()) == "retry: 2000"


async def stopped_within(panel: Child) -> float:
    """SIGTERM, then the seconds until the process has ended (waited for well past the bound)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    panel.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(panel.process.wait, 4 * DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the panel did not stop within {4 * DRAIN_SECONDS:g} s") from None
    return loop.time() - started


async def flapping(proxy: TCPProxy) -> None:
    while True:
        proxy.cut()
        await asyncio.sleep(0.05)
        proxy.restore()
        await asyncio.sleep(0.05)


async def broker_front(stack: AsyncExitStack, mqtt_url: str, trouble: str) -> tuple[TCPProxy, MuteBroker]:
    broker = urlsplit(mqtt_url)
    host, port = broker.hostname or "127.0.0.1", broker.port or 1883
    mute = await stack.enter_async_context(MuteBroker(host, port))
    # down and flapping: the proxy in front of the broker; silent: in front of the mute front
    proxy = await stack.enter_async_context(
        TCPProxy("127.0.0.1", mute.port) if trouble == "silent" else TCPProxy(host, port)
    )
    return proxy, mute


@pytest.mark.parametrize("trouble", ["down", "flapping", "silent"])
async def test_sigterm_ends_a_panel_with_open_desks_whatever_the_broker_does(
    trouble: str, tmp_path: Path, sqlite_url: str, mqtt_url: str
) -> None:
    async with AsyncExitStack() as stack:
        proxy, mute = await broker_front(stack, mqtt_url, trouble)
        config = prepared_config(tmp_path, sqlite_url, f"mqtt://127.0.0.1:{proxy.port}")
        panel = stack.enter_context(Child("panel", "--config", str(config)))
        await open_desk_streams(stack, await panel_url(panel), count=3)
        if trouble == "silent":
            mute.silent = True  # nothing tells the panel: its link just stops answering
        else:
            if trouble == "down":
                proxy.cut()
            else:
                flapper = asyncio.create_task(flapping(proxy), name="test.broker.flapping")
                stack.callback(flapper.cancel)
            await asyncio.to_thread(panel.stderr.until, "bus.mqtt.disconnected")
        elapsed = await stopped_within(panel)
        assert elapsed < DRAIN_SECONDS, f"SIGTERM took {elapsed:.1f} s with the broker {trouble}"


async def test_sigterm_ends_a_panel_whose_subscription_the_broker_never_confirms(
    tmp_path: Path, sqlite_url: str, mqtt_url: str
) -> None:
    """The broker takes the connection, then never confirms a subscription. Usually the panel is still
    starting then: its start-up waits for that confirmation (so no event published after it serves is
    missed) -- for a bounded time, or SIGTERM could not end it (7f09cab: 10 s). Had the panel
    connected only after subscribing, it is running and its connection waits for the answer instead."""
    broker = urlsplit(mqtt_url)
    async with MuteBroker(
        broker.hostname or "127.0.0.1", broker.port or 1883, answer_connect_only=True
    ) as mute:
        config = prepared_config(tmp_path, sqlite_url, f"mqtt://127.0.0.1:{mute.port}")
        with Child("panel", "--config", str(config)) as panel:
            await asyncio.wait_for(mute.subscribed.wait(), 30)
            elapsed = await stopped_within(panel)
    assert elapsed < DRAIN_SECONDS, f"SIGTERM took {elapsed:.1f} s with a subscription unanswered"
