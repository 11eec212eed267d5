"""The HTTP endpoints' defences against slow and too many clients: the panel and ``/metrics``.

uvicorn's h11 protocol starts no timer before its first response: a client that opens a connection
and sends half a request head keeps a socket, and a file descriptor, for as long as it likes. A
thousand of them exhaust the open-files limit; then every ``accept()`` fails and CPython logs each
failure with a traceback, up to the listen backlog per attempt (tens of megabytes a minute).

:class:`GuardedH11Protocol` adds what is missing, per server:

- a request's headers must arrive whole within ``header_timeout`` of the connection opening or of the
  previous response (a deadline: sending a byte at a time does not extend it), and its body must keep
  coming, no more than ``header_timeout`` between two pieces while the server reads;
- at most ``max_connections`` connections are open at once, and fewer when the open-files limit
  (``RLIMIT_NOFILE``) leaves less room: a new connection past the limit closes the oldest one still
  waiting for its request headers (a slow client, or an idle keep-alive), or is itself closed when
  every open connection is busy with a request;
- what it closes, and the accept errors of the event loop, are logged at most once per
  :data:`LOG_INTERVAL` seconds each, with counts.

:func:`uvicorn_config` sets uvicorn's own limits to match: keep-alive timeout, listen backlog,
``limit_concurrency`` (503 for requests beyond the connection limit), and ``X-Forwarded-*`` believed
only from the configured proxies. A reverse proxy in front still does what one process cannot (TLS,
per-address limits): see ``docs/PRODUCTION.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Callable, Generator
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gatewayd.config import HTTPServerConfig
from gatewayd.logging import log_event

log = logging.getLogger("gatewayd.webserver")

#: Connections accepted in one go, and the kernel's queue of connections not accepted yet.
BACKLOG = 128
#: File descriptors kept out of the connection limit for everything else the process opens
#: (database connections, the bus, log files, SMPP sessions when the daemon shares the process).
FD_RESERVE = 128
#: The fewest connections a server allows, whatever the open-files limit.
MIN_CONNECTIONS = 16
#: Seconds between two log lines about the same kind of trouble.
LOG_INTERVAL = 10.0

_ACCEPT_FAILED = "socket.accept() out of system resource"


class BoundedLog:
    """Logs an event the first time, then at most once per ``interval`` with how many happened since
    (a flood of the same trouble writes a few lines, not one per occurrence). The fields of an event
    should not vary: those of its first occurrence in an interval are written."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._pending: dict[str, tuple[asyncio.TimerHandle, dict[str, Any]]] = {}

    def note(self, event: str, **fields: Any) -> None:
        loop = asyncio.get_running_loop()
        self._counts[event] = self._counts.get(event, 0) + 1
        wait = self._last.get(event, -self.interval) + self.interval - loop.time()
        if wait <= 0:
            self._write(event, fields)
        elif event not in self._pending:
            self._pending[event] = (loop.call_later(wait, self._write, event, fields), fields)

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        self._pending.pop(event, None)
        count = self._counts.pop(event, 0)
        if count:
            self._last[event] = asyncio.get_running_loop().time()
            log_event(log, event, logging.WARNING, count=count, **fields)

    def close(self) -> None:
        """Writes what is still counted (the server stops)."""
        for event, (handle, fields) in list(self._pending.items()):
            handle.cancel()
            self._write(event, fields)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (0: a free port), for ``serve(sockets=[...])``:
    connections made before the server starts wait in the backlog instead of being refused, so the
    address can be announced as soon as this returns.

    Made with ``IPPROTO_TCP``, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets
    whose protocol says TCP, and without it every response after the first on a kept-alive connection
    waits for the client's delayed ACK (~40 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def connection_limit(configured: int) -> int:
    """``configured``, lowered to what the open-files limit leaves for connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(MIN_CONNECTIONS, min(configured, soft - BACKLOG - FD_RESERVE))


class _Admission:
    """One server's connection limit and its connections still waiting for request headers, oldest
    first (the ones a new connection may push out)."""

    def __init__(self, limit: int, header_timeout: float, log: BoundedLog) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.log = log
        self.waiting: dict[GuardedH11Protocol, None] = {}


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and a connection limit (see the module)."""

    admission: ClassVar[_Admission]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        admission = self.admission
        if len(self.connections) > admission.limit:
            oldest = next(iter(admission.waiting), None)
            if oldest is None:  # every connection is busy with a request: this one waits outside
                admission.log.note("http.connection_refused", limit=admission.limit)
                transport.close()
                return
            admission.log.note("http.connection_evicted", limit=admission.limit)
            oldest.close_waiting()
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:  # more of the body came: the next piece has as long again
            self._stop_waiting()
            self._arm(self._body_stalled)
        elif state is not h11.IDLE:  # the headers (and any body) are in
            self._stop_waiting()
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_headers()  # the next request of a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._disarm()
        super().connection_lost(exc)

    def close_waiting(self) -> None:
        self._stop_waiting()
        self._disarm()
        self.transport.close()

    def _await_headers(self) -> None:
        self.admission.waiting[self] = None
        self._arm(self._headers_late)

    def _stop_waiting(self) -> None:
        self.admission.waiting.pop(self, None)

    def _arm(self, expire: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.admission.header_timeout, expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        self.admission.log.note("http.headers_timeout", seconds=self.admission.header_timeout)
        self.close_waiting()

    def _body_stalled(self) -> None:
        self._deadline = None
        if self.flow.read_paused:  # the server is not reading: the client is not late
            self._arm(self._body_stalled)
            return
        self.admission.log.note("http.body_timeout", seconds=self.admission.header_timeout)
        self.transport.close()


def guarded_protocol(http: HTTPServerConfig, trouble: BoundedLog) -> type[GuardedH11Protocol]:
    """The protocol class for one server (its connections share one admission)."""
    admission = _Admission(connection_limit(http.max_connections), http.header_timeout, trouble)
    if admission.limit < http.max_connections:
        log_event(
            log,
            "http.max_connections_lowered",
            logging.WARNING,
            configured=http.max_connections,
            allowed=admission.limit,
            open_files_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
    return type("ServerH11Protocol", (GuardedH11Protocol,), {"admission": admission})


def uvicorn_config(app: Any, http: HTTPServerConfig, trouble: BoundedLog, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` under ``http``'s limits (``options``: the rest)."""
    protocol = guarded_protocol(http, trouble)
    forwarded = list(http.forwarded_allow_ips)
    return uvicorn.Config(
        app,
        http=protocol,
        backlog=BACKLOG,
        timeout_keep_alive=http.keep_alive_timeout,
        # uvicorn counts connections and running requests: the admission keeps connections to the
        # limit, so its 503 answers only requests still running past it (for clients already gone).
        limit_concurrency=protocol.admission.limit + 1,
        proxy_headers=bool(forwarded),
        forwarded_allow_ips=forwarded,
        server_header=False,
        # The program's logging writes uvicorn's lines too (with their time); uvicorn's own set-up
        # would give its loggers handlers of their own, with no timestamp.
        log_config=None,
        **options,
    )


class GuardedServer(uvicorn.Server):
    """A uvicorn server whose event loop logs accept errors (descriptors exhausted) boundedly."""

    def __init__(self, config: uvicorn.Config, trouble: BoundedLog) -> None:
        super().__init__(config)
        self.trouble = trouble

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        _bound_accept_errors(asyncio.get_running_loop(), self.trouble)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            self.trouble.close()


class EmbeddedServer(GuardedServer):
    """A guarded uvicorn server inside another program's loop (the daemon): that program owns the
    signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def guarded_server(
    app: Any, http: HTTPServerConfig, *, embedded: bool = False, **options: Any
) -> GuardedServer:
    """``app`` under uvicorn with ``http``'s limits; ``embedded`` leaves the signals to the caller."""
    trouble = BoundedLog()
    config = uvicorn_config(app, http, trouble, **options)
    return EmbeddedServer(config, trouble) if embedded else GuardedServer(config, trouble)


def _bound_accept_errors(loop: asyncio.AbstractEventLoop, trouble: BoundedLog) -> None:
    """Routes the loop's "accept() out of system resource" reports (one per failed accept, each with
    a traceback) to ``trouble``; everything else goes where it went before. Once per loop."""
    previous = loop.get_exception_handler()
    if getattr(previous, "bounds_accept_errors", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            trouble.note("http.accept_failed", error=str(context.get("exception")))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.bounds_accept_errors = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
