"""``ESMEClient``: keeps one ``ESMESession`` bound, reconnecting with exponential backoff and full jitter."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from types import TracebackType

from smpp.aio.esme import AnyMessageHandler, ESMEConfig, ESMESession, SubmitPDU
from smpp.errors import SessionClosed, SMPPError
from smpp.pdu import PDU

StateCallback = Callable[[str, bool], None]

log = logging.getLogger("smpp.esme")


def backoff_delay(attempt: int, minimum: float, maximum: float, rng: random.Random | None = None) -> float:
    """Full jitter: a uniform pick in ``[0, min(maximum, minimum * 2**attempt)]`` so that many binds
    dropped at the same moment do not come back at the same moment."""
    ceiling = min(maximum, minimum * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)


class ESMEClient:
    """Supervisor of one bind: ``async with`` starts the reconnect loop, leaving unbinds and stops it.

    ``on_state(name, bound)`` is called on every bind and every loss of the bind.
    """

    def __init__(
        self,
        config: ESMEConfig,
        on_message: AnyMessageHandler | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        self.config = config
        self._on_message = on_message
        self._on_state = on_state
        self._session: ESMESession | None = None
        self._bound_event: asyncio.Event | None = None
        self._stopping = False
        self._task_group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self.connects = 0  # successful binds so far
        self.last_error: BaseException | None = None
        #: Whether the last session ended with the SMSC answering our unbind (see ``ESMESession``):
        #: read in ``on_state(name, False)``, it tells a clean end from a lost connection.
        self.last_unbind_answered = False

    @property
    def session(self) -> ESMESession | None:
        """The bound session, or None while (re)connecting."""
        session = self._session
        return session if session is not None and session.bound else None

    @property
    def bound(self) -> bool:
        return self.session is not None

    async def __aenter__(self) -> ESMEClient:
        if self._task_group is not None:
            raise SMPPError(f"{self.config.name}: client already running")
        self._stopping = False
        self._bound_event = asyncio.Event()
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._task = self._task_group.create_task(
            self._reconnect_loop(), name=f"bind[{self.config.name}].reconnect"
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        task_group = self._task_group
        assert task_group is not None
        self._stopping = True
        session = self._session
        if session is not None:
            if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
                session.abort()
            else:
                await session.unbind()
        if self._task is not None:
            self._task.cancel()
        self._task_group = None
        # The body's own exception propagates as is (not wrapped in an ExceptionGroup by the TaskGroup).
        await task_group.__aexit__(None, None, None)

    def abort(self) -> None:
        """Drop the current connection now, without waiting for answers or for the unbind's (a daemon
        that lost its lease); once the client is stopping it does not reconnect."""
        session = self._session
        if session is not None:
            session.abort()

    async def wait_bound(self, timeout: float | None = None) -> ESMESession:  # noqa: ASYNC109
        """The bound session, once there is one. Raises ``TimeoutError`` after ``timeout`` seconds."""
        assert self._bound_event is not None, "use ESMEClient inside `async with`"
        async with asyncio.timeout(timeout):
            while True:
                session = self.session
                if session is not None:
                    return session
                await self._bound_event.wait()
                await asyncio.sleep(0)  # the event may still be set for a bind that was just lost

    async def submit(self, pdu: SubmitPDU) -> PDU:
        """Submit through the current bind, waiting (at most ``response_timeout``) for one while
        reconnecting. A request lost with its connection raises ``SessionClosed``: it is not resent
        here, because the SMSC may have accepted it."""
        if self._stopping:
            raise SessionClosed(f"{self.config.name}: client stopped", sent=False)
        try:
            session = await self.wait_bound(self.config.response_timeout)
        except TimeoutError:
            raise SessionClosed(f"{self.config.name}: not bound: {self.last_error}", sent=False) from None
        return await session.submit(pdu)

    async def _reconnect_loop(self) -> None:
        config = self.config
        attempt = 0
        while not self._stopping:
            session = ESMESession(config, self._on_message)
            try:
                await self._run_session(session)
            except (OSError, SMPPError, TimeoutError) as error:
                self.last_error = error
                log.warning(
                    "%s: bind to %s:%d failed: %s",
                    config.name,
                    config.host,
                    config.port,
                    str(error) or type(error).__name__,
                )
            else:
                attempt = 0
                if self._stopping:
                    return
            delay = backoff_delay(attempt, config.reconnect_min, config.reconnect_max)
            attempt += 1
            log.info("%s: reconnecting in %.2fs", config.name, delay)
            await asyncio.sleep(delay)

    async def _run_session(self, session: ESMESession) -> None:
        """Bind ``session`` and return when its connection has ended."""
        await session.__aenter__()
        self.connects += 1
        self._session = session
        self._set_state(True)
        try:
            await session.wait_closed()
        finally:
            if not session.closed:
                session.abort()  # cancelled while bound: the client is being torn down
            self._session = None
            self.last_error = SessionClosed(session.close_reason or "closed")
            self.last_unbind_answered = session.unbind_answered
            self._set_state(False)

    def _set_state(self, bound: bool) -> None:
        assert self._bound_event is not None
        if bound:
            self._bound_event.set()
        else:
            self._bound_event.clear()
        if self._on_state is not None:
            try:
                self._on_state(self.config.name, bound)
            except Exception:
                log.exception("%s: on_state callback failed", self.config.name)
