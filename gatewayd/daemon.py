"""The daemon: owns the database engine, the event bus, the binds and the pipelines.

``Daemon(config).run()`` starts everything as named tasks in one ``TaskGroup`` and returns after
:meth:`Daemon.stop` has drained it. Shutdown order matters for "nothing lost": first no more MTs
are claimed and those in flight get their responses recorded; then the binds unbind (the SMSC
stops delivering); then the bind leases are given up (another daemon binds them at once: see
``gatewayd.cluster``); then the MO and receipt committers drain what they still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gatewayd.assignment import AssignmentPolicy, AssignmentService
from gatewayd.binds import BindSupervisor, InboundDispatch
from gatewayd.bus import EventBus, create_bus
from gatewayd.campaigns import CampaignSender, CampaignSettings
from gatewayd.cluster import Ownership, Timings, this_member
from gatewayd.config import Config
from gatewayd.diversion import DiversionCache
from gatewayd.events import EventPublisher
from gatewayd.gc_tuning import tune_for_throughput
from gatewayd.health import LoopHealth
from gatewayd.instrumentation import DaemonHooks, MetricsService, metrics_hooks
from gatewayd.logging import log_event, redact_url
from gatewayd.metrics import GatewayMetrics
from gatewayd.mo import MOPipeline
from gatewayd.mo_message import keyword_set
from gatewayd.mt import MTPipeline
from gatewayd.notify import SystemdNotifier
from gatewayd.outbox import MTRequest, Outbox, OutboxSettings
from gatewayd.recorder import MTRecorder
from gatewayd.routes import MORouter, MTRouter, RouteTables, build_routes
from gatewayd.schema import check_at_head, head_revision
from gatewayd.store.engine import create_engine, read_session_factory
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.values import RetryPolicy
from gatewayd.store.store import Store
from gatewayd.webhooks.delivery import WebhookDeliverer
from gatewayd.webhooks.enqueue import WebhookTargets
from routing.errors import InvalidQuirks, InvalidRule
from routing.keywords import KeywordSet, default_keywords

#: Seconds between the daemon's status events when no bind changes.
STATUS_INTERVAL = 15.0

log = logging.getLogger("gatewayd.daemon")


class Daemon:
    """One gateway process. Not reusable: build a new one to run again."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: SystemdNotifier | None = None,
        metrics: GatewayMetrics | None = None,
        poll_interval: float = 1.0,
        require_schema_at_head: bool = True,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.config = config
        self.notifier = notifier or SystemdNotifier(None)
        self.metrics = metrics or GatewayMetrics()
        self.hooks: DaemonHooks = metrics_hooks(self.metrics)
        #: the loops that keep failing, for /healthz
        self.loop_health = LoopHealth()
        self.metrics_service = MetricsService(self, self.metrics)
        self.metrics_started = asyncio.Event()
        self.mt_no_route = Counter(
            "gatewayd_mt_no_route",
            "MTs kept queued because no bind their route allows was up",
            ["carrier", "rule"],
            registry=self.metrics.registry,
        )
        self.poll_interval = poll_interval
        #: seconds between the status events (binds up per carrier) when no bind changes
        self.status_interval = status_interval
        self._status_changed = asyncio.Event()
        self.events: EventPublisher | None = None
        self.require_schema_at_head = require_schema_at_head
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stop = asyncio.Event()
        self.engine: AsyncEngine | None = None
        self.store: Store | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.bus: EventBus | None = None
        self.binds: BindSupervisor | None = None
        #: Which bind slots this daemon owns among those sharing the database.
        self.cluster: Ownership | None = None
        self.mo: MOPipeline | None = None
        self.mt: MTPipeline | None = None
        #: The one way MTs are queued in this process (keyword answers, :meth:`queue_mt`).
        self.outbox: Outbox | None = None
        #: Submit results and delivery receipts: what became of each MT part.
        self.recorder: MTRecorder | None = None
        #: Hands waiting conversations to the operators of their pool, panel open or not.
        self.assignment: AssignmentService | None = None
        #: Feeds the running mass push campaigns into the outbox.
        self.campaigns: CampaignSender | None = None
        #: Posts the webhook deliveries the pipelines queue (None when ``[webhooks] enabled`` is false).
        self.webhooks: WebhookDeliverer | None = None
        #: Built once here and on every reload; invalid rules stop the start-up.
        self.routes: RouteTables = build_routes(config)

    # --- control -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a clean shutdown (SIGTERM): drain, unbind, return from :meth:`run`."""
        if not self._stop.is_set():
            log_event(log, "daemon.stopping")
            self.notifier.stopping()
            self._stop.set()

    def reload(self, config: Config) -> None:
        """SIGHUP: apply the carriers, routes and services' initial call-centre diversion of a freshly
        loaded configuration without a restart; a configuration whose rules or quirks do not validate
        changes nothing."""
        try:
            routes = build_routes(config)
        except InvalidRule as error:
            self._refuse_reload(error)
            return
        if self.mt is not None:
            try:
                self.mt.update_carriers(config.carriers)
            except InvalidQuirks as error:
                self._refuse_reload(error)
                return
            self.mt.wake()
        self.config = config
        self.routes = routes
        if self.outbox is not None:
            self.outbox.settings = OutboxSettings.from_config(config)
            if self.mt is not None:
                self.mt.billed_short_codes = self.outbox.settings.premium.billed_short_codes
        if self.campaigns is not None:
            self.campaigns.settings = CampaignSettings.from_config(config)
        if self.mo is not None:
            self.mo.router.update(routes.mo)
            self.mo.banned_replies = banned_replies(config)
        if self.assignment is not None:  # services added or with a new initial callcentre value
            self.assignment.diversion.configure((s.name, s.callcentre) for s in config.services)
        if self.binds is not None:
            self.binds.reload(config.carriers, MTRouter(routes.mt, config.carriers))
        if self.cluster is not None:  # new slots are taken, removed ones given up, now
            self.cluster.changed()
        log_event(log, "routes.loaded", mo_rules=len(routes.mo), mt_rules=len(routes.mt or ()))
        self.notifier.status(f"reloaded: {len(config.carriers)} carrier(s)")

    def _refuse_reload(self, error: Exception) -> None:
        log_event(log, "daemon.reload_refused", logging.ERROR, reason=str(error))
        self.notifier.status(f"reload refused: {error}")

    async def queue_mt(
        self,
        to: str,
        text: str,
        *,
        carrier: str | None = None,
        source: str | None = None,
        kind: MTKind = MTKind.PUSH,
        priority: int = 0,
    ) -> int:
        """Queue an MT in-process through the outbox (which wakes the sender at once); its id."""
        if self.outbox is None:
            raise RuntimeError("the daemon is not running")
        request = MTRequest(to, text, kind=kind, priority=priority, carrier=carrier, source=source)
        return (await self.outbox.queue(request)).mt_id

    # --- life ----------------------------------------------------------------------------------------

    async def _check_server_settings(self) -> None:
        """Warns of database settings that will slow the service down within hours (not at once)."""
        assert self.store is not None
        async with self.store.transaction() as session:
            unsafe = await self.store.server_settings.unsafe(session)
        if "autovacuum" in unsafe:
            log_event(
                log,
                "database.autovacuum_off",
                logging.WARNING,
                value=unsafe["autovacuum"],
                action="turn autovacuum on (postgresql.conf): without it the outbox's dead rows pile up and "
                "the MT claims and receipts slow down by the hour",
            )

    async def run(self) -> None:
        config = self.config
        url = config.database.url
        log_event(
            log,
            "daemon.starting",
            instance=config.daemon.instance,
            database=redact_url(url),
            bus=redact_url(config.bus.url),
            carriers=len(config.carriers),
        )
        if self.require_schema_at_head:
            revision = await check_at_head(url)
            if revision != head_revision():
                log_event(
                    log,
                    "daemon.schema_newer",
                    logging.WARNING,
                    revision=revision,
                    head=head_revision(),
                    action="a newer release migrated the database (expanding only): upgrade this host next",
                )
        async with AsyncExitStack() as stack:
            # no pre-ping (a dead pooled connection fails its transaction, which the loops try again),
            # generic plans and no JIT for the pipelines' statements: see create_engine
            self.engine = create_engine(
                url,
                pool_size=config.database.pool_size,
                max_overflow=config.database.max_overflow,
                pre_ping=False,
                custom_plans=False,
                jit=False,
                application_name=f"gatewayd {config.daemon.instance}",
            )
            stack.push_async_callback(self.engine.dispose)
            self.store = Store.for_engine(self.engine)
            self.sessions = self.store.sessions
            await self._check_server_settings()
            # the heartbeat's own small pool, with time limits: it never waits behind the pipelines'
            # connections, and a database that stops answering cannot hang it
            cluster_engine = create_engine(
                url,
                pool_size=1,
                max_overflow=1,
                pre_ping=False,
                timeout=config.cluster.lease / 2,
                application_name=f"gatewayd {config.daemon.instance} cluster",
            )
            stack.push_async_callback(cluster_engine.dispose)
            bus = create_bus(
                config.bus.url,
                topic_prefix=config.bus.topic_prefix,
                client_id=config.bus.client_id,
                buffer_size=config.bus.buffer_size,
            )
            await stack.enter_async_context(bus)
            self.bus = bus
            self.metrics.track_bus_drops(lambda: bus.dropped)
            self.assignment = AssignmentService(
                self.sessions,
                bus,
                _assignment_policy(config),
                readers=read_session_factory(self.engine),
                diversion=DiversionCache.for_services((s.name, s.callcentre) for s in config.services),
            )
            events = EventPublisher(bus, on_conversation=self.assignment.note_waiting)
            self.events = events
            self._build(events)
            assert self.binds is not None
            self.cluster = Ownership(
                Store.for_engine(cluster_engine),
                self.binds,
                this_member(config.daemon.instance),
                Timings.from_config(config.cluster),
                metrics=self.metrics,
                bus=bus,
                status=self._cluster_status,
                health=self.loop_health,
            )
            member = self.cluster.member
            self.metrics.instance_info.labels(member.instance, member.host, member.version).set(1)
            await self.cluster.join()
            if self.webhooks is not None:  # before the first MO: its deliveries are queued with it
                await self.webhooks.refresh()
            tune_for_throughput()
            try:
                await self._run_tasks()
            finally:
                self.stopped.set()
        log_event(log, "daemon.stopped", instance=config.daemon.instance)

    def _build(self, events: EventPublisher) -> None:
        config = self.config
        assert self.store is not None
        hooks = self.hooks
        self.outbox = Outbox(
            OutboxSettings.from_config(config),
            sessions=self.store.sessions,
            bus=events.bus,
            wake=self._mt_queued,
            inserts=self.store.mt_inserts,
        )
        self.campaigns = CampaignSender(self.store, self.outbox, CampaignSettings.from_config(config))
        targets = WebhookTargets(self.store.webhook_queue)
        if config.webhooks.enabled:
            self.webhooks = WebhookDeliverer(
                self.store, config.webhooks, targets, bus=events.bus, health=self.loop_health
            )
        self.recorder = MTRecorder(
            self.store,
            events,
            retry=RetryPolicy(
                limit=config.daemon.mt_retry_limit,
                initial=config.daemon.mt_retry_backoff_initial,
                maximum=config.daemon.mt_retry_backoff_max,
            ),
            max_batch=config.daemon.group_commit_max_batch,
            on_written=self._mt_recorded,
            on_batch=hooks.receipt_batch,
            on_receipt=hooks.receipt,
            on_early=hooks.receipts_early,
            on_changes=hooks.mt_changes,
            on_possible_duplicates=hooks.mt_possible_duplicates,
            health=self.loop_health,
            webhooks=targets,
        )
        self.mo = MOPipeline(
            self.store,
            events,
            keywords_for=self._keywords_for,
            router=MORouter(self.routes.mo),
            outbox=self.outbox,
            banned_replies=banned_replies(config),
            reassembly_timeout=config.daemon.reassembly_timeout,
            answer_deadline=config.daemon.mo_answer_deadline,
            max_batch=config.daemon.group_commit_max_batch,
            on_batch=hooks.mo_batch,
            on_committed=hooks.mo_committed,
            on_incomplete=hooks.mo_incomplete,
            on_refused=hooks.mo_refused,
            on_in_transaction=hooks.mo_in_transaction,
            health=self.loop_health,
            webhooks=targets,
        )
        self.binds = BindSupervisor(
            config.carriers,
            InboundDispatch(messages=self.mo.accept, receipts=self.recorder.receipt),
            events,
            router=MTRouter(self.routes.mt, config.carriers),
            on_state=self._bind_state,
            on_no_route=self._count_no_route,
        )
        self.mt = MTPipeline(
            self.store,
            events,
            self.binds,
            config.carriers,
            self.recorder,
            owner=config.daemon.instance,
            claim_batch=config.daemon.mt_claim_batch,
            lease=config.daemon.mt_claim_lease,
            poll_interval=self.poll_interval,
            on_submitted=hooks.mt_submitted,
            on_changes=hooks.mt_changes,
            on_possible_duplicates=hooks.mt_possible_duplicates,
            on_reclaimed=self.metrics.mt_reclaimed.inc,
            health=self.loop_health,
            webhooks=targets,
        )
        self.mt.billed_short_codes = self.outbox.settings.premium.billed_short_codes
        mo, recorder = self.mo, self.recorder
        self.metrics.track_commit_failures(lambda: mo.temporary_failures, lambda: recorder.temporary_failures)
        self.metrics.track_receipts_dropped(lambda: recorder.unparsable, lambda: recorder.refused_receipts)

    def _bind_state(self, carrier: str, bind: str, up: bool, unbound: bool) -> None:
        # the MO pipeline first: answers given on a connection just lost are in doubt
        if self.mo is not None:
            self.mo.bind_state(carrier, bind, up, unbound=unbound)
        if self.hooks.bind_state is not None:
            self.hooks.bind_state(carrier, bind, up)
        self._status_changed.set()

    def lags(self) -> dict[str, int]:
        """What the pipelines hold not written yet (``gatewayd status``, the metrics)."""
        return {
            "mo_pending": self.mo.pending if self.mo is not None else 0,
            "receipts_pending": self.recorder.receipts_pending if self.recorder is not None else 0,
            "mt_in_flight": self.mt.in_flight if self.mt is not None else 0,
            "mt_unrecorded": self.recorder.unrecorded if self.recorder is not None else 0,
        }

    def _cluster_status(self) -> dict[str, Any]:
        """What this daemon's heartbeat writes about it: its binds, its lags (``gatewayd status``)."""
        binds = self.binds
        slots = binds.slots if binds is not None else {}
        owned = sorted(binds.owned) if binds is not None else []
        return {
            "binds": {
                name: {"carrier": slots[name].carrier, "up": binds is not None and binds.up(name)}
                for name in owned
                if name in slots
            },
            "outbox_depth": self.metrics_service.outbox_depth,
            **self.lags(),
        }

    def _mt_queued(self) -> None:
        if self.mt is not None:
            self.mt.wake()

    def _mt_recorded(self, requeued: bool) -> None:
        if self.mt is not None:
            self.mt.recorded(requeued)

    def _keywords_for(self, country: str) -> KeywordSet:
        configured = self.config.keywords.get(country.upper())
        if configured is None:
            return default_keywords(country)
        return keyword_set(configured.opt_out, configured.opt_in, configured.help)

    def _count_no_route(self, carrier: str, rule: str) -> None:
        self.mt_no_route.labels(carrier, rule).inc()

    async def _run_tasks(self) -> None:
        assert self.binds is not None and self.mo is not None and self.mt is not None
        assert self.recorder is not None and self.assignment is not None and self.campaigns is not None
        assert self.cluster is not None
        async with asyncio.TaskGroup() as group:
            recorder_task = group.create_task(self.recorder.run_loop(), name="recorder.run_loop")
            mo_task = group.create_task(self.mo.run_loop(), name="mo.run_loop")
            binds_task = group.create_task(self.binds.run_loop(), name="binds.run_loop")
            mt_task = group.create_task(self.mt.run_loop(), name="mt.run_loop")
            cluster_task = group.create_task(self.cluster.cluster_loop(), name="cluster_loop")
            background = [
                group.create_task(self._cluster_changed_loop(), name="cluster.changed_loop"),
                group.create_task(self._watchdog_loop(), name="daemon.watchdog_loop"),
                group.create_task(self._outbox_wake_loop(), name="mt.outbox_wake_loop"),
                group.create_task(self._status_loop(), name="daemon.status_loop"),
                group.create_task(self._status_request_loop(), name="daemon.status_request_loop"),
                group.create_task(self.metrics_service.sample_loop(), name="metrics.sample_loop"),
                group.create_task(self.assignment.run_loop(), name="assignment.run_loop"),
                group.create_task(self.assignment.diversion_loop(), name="assignment.diversion_loop"),
                group.create_task(self.campaigns.run_loop(), name="campaigns.run_loop"),
            ]
            if self.webhooks is not None:
                background.append(group.create_task(self.webhooks.run_loop(), name="webhooks.run_loop"))
            if self.config.metrics.enabled:
                listen = self.config.metrics.listen
                background.append(
                    group.create_task(
                        self.metrics_service.serve(listen.host, listen.port, started=self.metrics_started),
                        name="metrics.serve",
                    )
                )
            self.ready.set()
            self.notifier.ready(status=f"{len(self.binds.slots)} bind(s) configured")
            log_event(log, "daemon.ready", binds=len(self.binds.slots))
            await self._stop.wait()
            # 0. no more bind slots taken
            self.cluster.close()
            # 1. no new MTs; the ones in flight get their responses and are recorded
            self.mt.close()
            await mt_task
            # 2. unbind: the SMSC stops delivering; in-flight deliveries are answered first
            self.binds.stop()
            await binds_task
            # 3. the leases given up: the other daemons bind the slots now
            await self.cluster.leave()
            await cluster_task
            # 4. drain what the committers still hold
            self.mo.close()
            await mo_task
            self.recorder.close()
            await recorder_task
            for task in background:
                task.cancel()

    async def _status_loop(self) -> None:
        """Publishes the binds up per carrier at once on every bind change, else every
        ``status_interval`` seconds, and when a panel asks: the panels' start page shows them (and
        "unknown" when none came)."""
        assert self.binds is not None and self.events is not None
        while True:
            self._status_changed.clear()
            await self.events.status(*self.binds.carrier_binds(), instance=self.config.daemon.instance)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), self.status_interval)

    async def _status_request_loop(self) -> None:
        """A panel asked for the status (it just started): published at once."""
        assert self.bus is not None
        async with self.bus.subscribe(self.bus.topics.status_request()) as requests:
            async for _event in requests:
                self._status_changed.set()

    async def _cluster_changed_loop(self) -> None:
        """Another daemon joined, gave slots up or left: beat now rather than at the next heartbeat."""
        assert self.bus is not None and self.cluster is not None
        async with self.bus.subscribe(self.bus.topics.cluster_changed()) as changes:
            async for _event in changes:
                self.cluster.changed()

    async def _outbox_wake_loop(self) -> None:
        """The panel (maybe another process) queued an MT: claim now rather than at the next poll."""
        assert self.bus is not None and self.mt is not None
        async with self.bus.subscribe(self.bus.topics.outbox_queued()) as queued:
            async for _event in queued:
                self.mt.wake()

    async def _watchdog_loop(self) -> None:
        """Tell systemd we are alive while the event loop turns (WatchdogSec in the unit)."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def _assignment_policy(config: Config) -> AssignmentPolicy:
    assignment = config.assignment
    return AssignmentPolicy(
        sweep_interval=assignment.sweep_interval,
        batch=assignment.batch,
        presence_grace=timedelta(seconds=assignment.presence_grace),
        callcentre_pool=assignment.callcentre_pool,
    )


def banned_replies(config: Config) -> dict[str, str]:
    """Each service's ``banned_reply``, for the services that have one."""
    return {service.name: service.banned_reply for service in config.services if service.banned_reply}
