"""Waiting in tests for a state the system reaches asynchronously: the one way every test does it.

:func:`eventually` polls the state a check reads (a database row, an SMSC's received PDUs, a page),
never sleeping a fixed time for something to happen: the bound is generous and only ends a test that
would otherwise hang, so it is never a timing assertion.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

#: Between two looks at the state: short enough to add nothing a test notices.
POLL_INTERVAL = 0.01


async def eventually(
    check: Callable[[], object | Awaitable[object]],
    within: float = 15.0,
    *,
    interval: float = POLL_INTERVAL,
    what: str = "",
) -> None:
    """Returns once ``check()`` is truthy (awaited when it returns an awaitable); fails with an
    ``AssertionError`` naming ``what`` after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(
            f"not within {within:g} s: {what or getattr(check, '__name__', 'the condition')}"
        ) from None
