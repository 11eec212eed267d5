"""Prometheus metrics of the daemon and the small ASGI app serving ``/metrics`` and ``/healthz``.

Collectors live on a dedicated :class:`CollectorRegistry` per :class:`GatewayMetrics` (not the global
one), so tests and several daemons in one process never collide.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_Labelled = TypeVar("_Labelled", Counter, Gauge, Histogram)


def labelled_children(metric: _Labelled) -> Callable[..., _Labelled]:
    """``metric.labels`` remembering each child: ``labels()`` validates and locks on every call, too much
    for a hook run per submit or receipt. The label sets are bounded (see :class:`GatewayMetrics`)."""
    children: dict[tuple[str, ...], _Labelled] = {}

    def child(*values: str) -> _Labelled:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """Every collector the daemon updates. Label sets are small and bounded (carriers, binds,
    short codes, statuses), never per subscriber or per message."""

    def __init__(self, *, namespace: str = "gatewayd") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.binds_up = Gauge(
            "binds_up", "Binds currently bound, per carrier", ["carrier"], namespace=ns, registry=r
        )
        self.window_in_use = Gauge(
            "bind_window_in_use",
            "Requests awaiting a response on a bind",
            ["carrier", "bind"],
            namespace=ns,
            registry=r,
        )
        self.mo_received = Counter(
            "mo_received",
            "MOs committed (new, not duplicates)",
            ["carrier", "short_code"],
            namespace=ns,
            registry=r,
        )
        self.mo_batches_in_transaction = Counter(
            "mo_batches_in_transaction",
            "Plain MO batches the one-statement path (PostgreSQL) gave to a transaction, by reason: "
            "unresolved, closed_meanwhile, held_pushes, carrier_changed, banned_writer",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.mo_duplicates = Counter(
            "mo_duplicates",
            "MOs and parts of long MOs the SMSC delivered again (our answer may have been lost), stored once",
            ["carrier"],
            namespace=ns,
            registry=r,
        )
        self.mt_submitted = Counter(
            "mt_parts_submitted",
            "MT segments answered by the SMSC, by outcome",
            ["carrier", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.mt_status = Counter(
            "mt_status_changes", "MT status transitions, by new status", ["status"], namespace=ns, registry=r
        )
        self.mt_possible_duplicates = Counter(
            "mt_possible_duplicates",
            "MTs sent again though the SMSC may have taken them already (at-least-once), by reason: "
            "restart (in flight when a daemon died), unanswered (a submit_sm that left got no answer)",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.receipts = Counter(
            "receipts",
            "Delivery receipts received, by receipt state",
            ["carrier", "state"],
            namespace=ns,
            registry=r,
        )
        self.receipts_early = Counter(
            "receipts_early",
            "Receipts that arrived before their submit_sm_resp",
            ["carrier"],
            namespace=ns,
            registry=r,
        )
        self.submit_latency = Histogram(
            "submit_latency_seconds",
            "submit_sm to submit_sm_resp",
            ["carrier"],
            buckets=LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "outbox_depth", "MTs queued or sending, per carrier", ["carrier"], namespace=ns, registry=r
        )
        self.db_commit_latency = Histogram(
            "db_commit_seconds",
            "Duration of a store transaction, per unit of work",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.mo_refused = Counter(
            "mo_refused",
            "MOs answered with a permanent error: unusable address, or data the database refuses",
            ["carrier", "reason"],
            namespace=ns,
            registry=r,
        )
        self.reassembly_incomplete = Counter(
            "reassembly_incomplete",
            "Long MOs stored with parts missing after the reassembly timeout",
            ["carrier"],
            namespace=ns,
            registry=r,
        )
        self.mo_pending = Gauge("mo_pending", "MOs received and not committed yet", namespace=ns, registry=r)
        self.receipts_pending = Gauge(
            "receipts_pending", "Delivery receipts received and not committed yet", namespace=ns, registry=r
        )
        # --- several daemons (gatewayd.cluster) ---
        self.instance_info = Gauge(
            "instance_info",
            "1, labelled with this daemon's instance name, host and version",
            ["instance", "host", "version"],
            namespace=ns,
            registry=r,
        )
        self.bind_slots_owned = Gauge(
            "bind_slots_owned",
            "Bind slots this daemon owns, per carrier",
            ["carrier"],
            namespace=ns,
            registry=r,
        )
        self.bind_slots_configured = Gauge(
            "bind_slots_configured",
            "Bind slots configured (binds x count), per carrier",
            ["carrier"],
            namespace=ns,
            registry=r,
        )
        self.cluster_daemons = Gauge(
            "cluster_daemons", "Live daemons this daemon saw at its last heartbeat", namespace=ns, registry=r
        )
        self.bind_leases_lost = Counter(
            "bind_leases_lost",
            "Bind slots this daemon dropped because it could not renew their leases in time, or found "
            "them taken",
            namespace=ns,
            registry=r,
        )
        self.mt_reclaimed = Counter(
            "mt_reclaimed",
            "MTs taken over from a daemon whose claim lease ran out (it died or was cut off) that may have "
            "reached the SMSC: sent again (at-least-once), at most what that daemon had in flight",
            namespace=ns,
            registry=r,
        )
        self.cluster_heartbeat_age = Gauge(
            "cluster_heartbeat_age_seconds",
            "Seconds since this daemon's last successful lease renewal (-1 before the first)",
            namespace=ns,
            registry=r,
        )
        self._events_dropped = _CallbackCounter(
            f"{ns}_bus_events_dropped", "Bus events dropped because a buffer was full"
        )
        self.registry.register(self._events_dropped)
        self._mo_commit_failures = _CallbackCounter(
            f"{ns}_mo_commit_failures",
            "MOs answered ESME_RX_T_APPN because the database did not take them, or not in time (a full "
            "backlog): the SMSC delivers them again",
        )
        self.registry.register(self._mo_commit_failures)
        self._receipt_commit_failures = _CallbackCounter(
            f"{ns}_receipt_commit_failures",
            "Receipts answered ESME_RX_T_APPN because the database did not take them (delivered again)",
        )
        self.registry.register(self._receipt_commit_failures)
        self._receipts_unparsable = _CallbackCounter(
            f"{ns}_receipts_unparsable",
            "Receipts acknowledged but dropped: no message id any submit_sm_resp could have given",
        )
        self.registry.register(self._receipts_unparsable)
        self._receipts_refused = _CallbackCounter(
            f"{ns}_receipts_refused",
            "Receipts the database refused for their data, answered ESME_RX_P_APPN (never delivered again)",
        )
        self.registry.register(self._receipts_refused)
        self._failing_loops = _FailingLoops(
            f"{ns}_loop_failing_seconds",
            "Seconds a loop (mo.commit, mt.claim, receipts.commit, ...) has kept failing with no success in "
            "between; only the loops failing now (as /healthz names them)",
        )
        self.registry.register(self._failing_loops)

    def track_bus_drops(self, read_dropped: Callable[[], int]) -> None:
        """Reports ``read_dropped()`` (e.g. ``lambda: bus.dropped``) as the dropped-events counter."""
        self._events_dropped.source = read_dropped

    def track_commit_failures(self, mos: Callable[[], int], receipts: Callable[[], int]) -> None:
        """Reports the MO pipeline's and the receipt recorder's own counts of commits given up."""
        self._mo_commit_failures.source = mos
        self._receipt_commit_failures.source = receipts

    def track_receipts_dropped(self, unparsable: Callable[[], int], refused: Callable[[], int]) -> None:
        """Reports the receipt recorder's counts of receipts it could not apply."""
        self._receipts_unparsable.source = unparsable
        self._receipts_refused.source = refused

    def track_failing_loops(self, read_failing: Callable[[], Mapping[str, Mapping[str, object]]]) -> None:
        """Reports ``read_failing()`` (``LoopHealth.failing``: loop -> ``for_seconds`` ...) as a gauge."""
        self._failing_loops.source = read_failing

    def render(self) -> bytes:
        """The text exposition format of every collector."""
        return generate_latest(self.registry)


class _CallbackCounter(Collector):
    """A counter whose value is read from elsewhere (the bus keeps its own count)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.source: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation)
        family.add_metric([], float(self.source()))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)


class _FailingLoops(Collector):
    """A gauge per failing loop, read from the daemon's loop health at each scrape."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.source: Callable[[], Mapping[str, Mapping[str, object]]] = dict

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["loop"])
        for loop, failing in self.source().items():
            seconds = failing["for_seconds"]
            assert isinstance(seconds, int | float)
            family.add_metric([loop], float(seconds))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["loop"])


@dataclass(frozen=True, slots=True)
class HealthReport:
    """``ok`` decides 200 or 503; ``checks`` is shown as is (JSON-serializable values)."""

    ok: bool
    checks: Mapping[str, Any] = field(default_factory=dict)


HealthCheck = Callable[[], HealthReport | Awaitable[HealthReport]]


def create_metrics_app(metrics: GatewayMetrics, health: HealthCheck) -> Starlette:
    """ASGI app: ``GET /metrics`` (Prometheus text) and ``GET /healthz`` (JSON; 503 when not ok, or
    when the health check itself fails)."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def health_endpoint(_: Request) -> Response:
        try:
            outcome = health()
            report = await outcome if inspect.isawaitable(outcome) else outcome
        except Exception as error:  # a failing check is an unhealthy daemon, not a 500
            return JSONResponse({"ok": False, "error": type(error).__name__}, status_code=503)
        assert isinstance(report, HealthReport)
        return JSONResponse({"ok": report.ok, **report.checks}, status_code=200 if report.ok else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", health_endpoint, methods=["GET"]),
        ]
    )
