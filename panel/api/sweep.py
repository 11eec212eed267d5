"""The API's one background loop, run by the panel's lifespan: answers kept for ``Idempotency-Key``
are forgotten after :data:`gatewayd.store.apikeys.IDEMPOTENCY_KEPT` (a day). Every panel process
sweeps; two sweeping at once delete the same rows, harmlessly."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from gatewayd.store.apikeys import sweep_idempotency
from gatewayd.store.base import utcnow
from panel.runtime import PanelRuntime

log = logging.getLogger(__name__)

#: Seconds between sweeps: a kept answer lives a day and at most this much longer.
SWEEP_EVERY = 3600.0


async def idempotency_sweep_loop(state: PanelRuntime, every: float = SWEEP_EVERY) -> None:
    """Sweeps now and every ``every`` seconds; returns once the panel stops, after the sweep under way
    (cancelled mid-statement, it would leave a SQLite connection's worker thread to answer a loop
    that is gone)."""
    stopped = asyncio.Event()
    with state.stopping.ending(stopped.set):
        while not stopped.is_set():
            try:
                async with state.sessionmaker() as session, session.begin():
                    forgotten = await sweep_idempotency(session, utcnow())
                if forgotten:
                    log.info("api: %d idempotency answers older than a day forgotten", forgotten)
            except SQLAlchemyError as error:  # the next sweep tries again
                log.warning("api: idempotency sweep failed: %s", error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stopped.wait()
