"""The daemon's metrics: pipeline hooks feeding the Prometheus collectors, sampled gauges, ``/healthz``,
and the small HTTP server that serves them.

The daemon builds on this module, never the other way round: the service reads the daemon through
the :class:`Monitored` protocol (what ``/healthz`` and the gauges need), not through its class."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.binds import BindSupervisor
from gatewayd.config import Config
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.metrics import GatewayMetrics, HealthReport, create_metrics_app, labelled_children
from gatewayd.mo_message import InboundMO
from gatewayd.store.mt.status import outbox_depth
from gatewayd.store.mt.values import MTStatusChange
from gatewayd.webserver import guarded_server, listening_socket

log = logging.getLogger("gatewayd.metrics")

#: How often gauges that need a query or a scan (outbox depth, windows in use) are refreshed.
SAMPLE_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class DaemonHooks:
    """Optional observers of the daemon's pipelines (metrics): every callable is cheap and synchronous."""

    mo_batch: Callable[[int, float, BaseException | None], None] | None = None
    mo_committed: Callable[[Sequence[InboundMO], int], None] | None = None
    mo_incomplete: Callable[[str], None] | None = None
    mo_refused: Callable[[str, str], None] | None = None
    mo_in_transaction: Callable[[str], None] | None = None
    receipt_batch: Callable[[int, float, BaseException | None], None] | None = None
    receipt: Callable[[str, str], None] | None = None
    receipts_early: Callable[[str, int], None] | None = None
    bind_state: Callable[[str, str, bool], None] | None = None
    mt_submitted: Callable[[str, str, float], None] | None = None
    mt_changes: Callable[[Sequence[MTStatusChange]], None] | None = None
    mt_possible_duplicates: Callable[[str, int], None] | None = None


class Monitored(Protocol):
    """What the metrics service reads of a running daemon (`gatewayd.daemon.Daemon`)."""

    @property
    def config(self) -> Config: ...

    @property
    def binds(self) -> BindSupervisor | None: ...

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession] | None: ...

    @property
    def loop_health(self) -> LoopHealth: ...

    @property
    def ready(self) -> asyncio.Event: ...

    @property
    def stopped(self) -> asyncio.Event: ...

    def lags(self) -> dict[str, int]:
        """What the pipelines hold not written yet: ``mo_pending``, ``receipts_pending``, ..."""
        ...


def metrics_hooks(metrics: GatewayMetrics) -> DaemonHooks:
    """Pipeline observers that update ``metrics`` (cheap: label look-ups, no I/O)."""
    commit_latency = labelled_children(metrics.db_commit_latency)
    mo_received = labelled_children(metrics.mo_received)
    mo_duplicates = labelled_children(metrics.mo_duplicates)
    mt_submitted_count = labelled_children(metrics.mt_submitted)
    submit_latency = labelled_children(metrics.submit_latency)
    mt_status = labelled_children(metrics.mt_status)
    receipts = labelled_children(metrics.receipts)
    receipts_early = labelled_children(metrics.receipts_early)
    reassembly_incomplete = labelled_children(metrics.reassembly_incomplete)
    mo_refused = labelled_children(metrics.mo_refused)
    mo_in_transaction = labelled_children(metrics.mo_batches_in_transaction)
    possible_duplicates = labelled_children(metrics.mt_possible_duplicates)

    def mo_batch(size: int, seconds: float, error: BaseException | None) -> None:
        commit_latency("mo").observe(seconds)

    def mo_committed(stored: Sequence[InboundMO], duplicates: int) -> None:
        for (carrier, short_code), count in Counter((mo.carrier, mo.short_code) for mo in stored).items():
            mo_received(carrier, short_code).inc(count)
        if duplicates:
            mo_duplicates("all").inc(duplicates)

    def receipt_batch(size: int, seconds: float, error: BaseException | None) -> None:
        commit_latency("receipts").observe(seconds)

    def mt_submitted(carrier: str, outcome: str, seconds: float) -> None:
        mt_submitted_count(carrier, outcome).inc()
        submit_latency(carrier).observe(seconds)

    def mt_changes(changes: Sequence[MTStatusChange]) -> None:
        for status, count in Counter(change.status.value for change in changes).items():
            mt_status(status).inc(count)

    return DaemonHooks(
        mo_batch=mo_batch,
        mo_committed=mo_committed,
        mo_incomplete=lambda carrier: reassembly_incomplete(carrier).inc(),
        mo_refused=lambda carrier, reason: mo_refused(carrier, reason).inc(),
        mo_in_transaction=lambda reason: mo_in_transaction(reason).inc(),
        receipt_batch=receipt_batch,
        receipt=lambda carrier, state: receipts(carrier, state).inc(),
        receipts_early=lambda carrier, count: receipts_early(carrier).inc(count),
        mt_submitted=mt_submitted,
        mt_changes=mt_changes,
        mt_possible_duplicates=lambda reason, count: possible_duplicates(reason).inc(count),
    )


class MetricsService:
    """Serves ``/metrics`` and ``/healthz`` for a daemon and refreshes its sampled gauges."""

    def __init__(self, daemon: Monitored, metrics: GatewayMetrics) -> None:
        self.daemon = daemon
        self.metrics = metrics
        metrics.track_failing_loops(daemon.loop_health.failing)
        self._depth: dict[str, int] = {}

    def health(self) -> HealthReport:
        config: Config = self.daemon.config
        binds = self.daemon.binds
        up = {carrier.name: binds.binds_up(carrier.name) if binds else 0 for carrier in config.carriers}
        # the binds this daemon owns must be up: a carrier whose slots other daemons own is theirs
        owned = binds.owned_binds() if binds else {}
        depth = sum(self._depth.values())
        failing = self.daemon.loop_health.failing()
        ok = (
            self.daemon.ready.is_set()
            and not self.daemon.stopped.is_set()
            and all(
                count >= min(config.health.min_binds_up, owned.get(carrier, 0))
                for carrier, count in up.items()
            )
            and depth <= config.health.max_outbox_depth
            and not failing
        )
        return HealthReport(
            ok, {"binds_up": up, "binds_owned": owned, "outbox_depth": depth, "failing": failing}
        )

    @property
    def outbox_depth(self) -> int:
        """MTs queued or sending at the last sample, every carrier's."""
        return sum(self._depth.values())

    async def sample_loop(self) -> None:
        while True:
            self._sample_binds()
            await self._sample_outbox()
            await asyncio.sleep(SAMPLE_INTERVAL)

    def _sample_binds(self) -> None:
        lags = self.daemon.lags()
        self.metrics.mo_pending.set(lags.get("mo_pending", 0))
        self.metrics.receipts_pending.set(lags.get("receipts_pending", 0))
        binds = self.daemon.binds
        if binds is None:
            return
        for carrier in self.daemon.config.carriers:
            self.metrics.binds_up.labels(carrier.name).set(binds.binds_up(carrier.name))
        for name, slot in binds.slots.items():
            client = binds.client(name)
            session = client.session if client is not None else None
            self.metrics.window_in_use.labels(slot.carrier, name).set(session.in_flight if session else 0)

    async def _sample_outbox(self) -> None:
        sessions = self.daemon.sessions
        if sessions is None:
            return
        try:
            async with sessions() as session:
                depth = await outbox_depth(session)
        except Exception as error:  # the database may be away: keep the last figures
            log_event(log, "metrics.outbox_depth_failed", logging.DEBUG, error=repr(error))
            return
        for carrier in set(self._depth) | set(depth):
            self.metrics.outbox_depth.labels(carrier).set(depth.get(carrier, 0))
        self._depth = depth

    async def serve(self, host: str, port: int, *, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled. ``port`` 0 picks a free one (read :attr:`port`)."""
        app = create_metrics_app(self.metrics, self.health)
        sock = listening_socket(host, port)
        self.port = sock.getsockname()[1]
        server = guarded_server(
            app,
            self.daemon.config.metrics.http,
            embedded=True,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        log_event(log, "metrics.listening", url=f"http://{host}:{self.port}/metrics")
        if started is not None:
            started.set()
        try:
            await server.serve(sockets=[sock])
        except asyncio.CancelledError:
            server.should_exit = True
            raise
        finally:
            sock.close()
