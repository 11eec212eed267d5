"""The webhook delivery worker: a daemon background loop posting due deliveries from the database queue.

Each pass leases due deliveries (``Store.webhook_queue``: per client and subscription only the oldest
pending one, several daemons sharing the queue) within the free slots: ``[webhooks] concurrency`` in all,
``per_subscription`` per subscription, so a slow or dead receiver holds only its own slots and never the
MO pipeline, which only inserts rows. Each delivery is posted signed (:mod:`.signing`) to the checked
address of its URL (:mod:`gatewayd.net_safety`), without redirects or proxies from the environment,
within ``timeout``, reading at most :data:`MAX_RESPONSE` bytes of the answer. A 2xx answer delivers it;
anything else retries it after a growing backoff, until it is dead (``max_attempts``, ``max_age``). A
worker that dies while posting leaves the lease to expire: that delivery is posted again (at least once;
the delivery id lets the receiver drop a repeat). An outcome is written only while the claim's lease token
is still on the row, so a late worker never overwrites the next one's; a worker gives back the leases it
has not posted when it stops or a subscription goes inactive, and skips a claimed delivery whose lease
would run out during the post.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from gatewayd.bus import EventBus
from gatewayd.config import WebhooksConfig
from gatewayd.health import LoopHealth
from gatewayd.logging import log_event
from gatewayd.net_safety import UnsafeTarget, VettedTarget, pinned, vetted_target
from gatewayd.store.store import Store
from gatewayd.store.webhooks import (
    ClaimedDelivery,
    purge_delivered,
    record_delivered,
    record_failed,
    release,
)
from gatewayd.webhooks.enqueue import WebhookTargets
from gatewayd.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, backoff, signature
from gatewayd.webhooks.subscriptions import active_subscriptions

log = logging.getLogger("gatewayd.webhooks")

#: Bytes of a receiver's answer read at most (the status is what counts).
MAX_RESPONSE = 64 * 1024
USER_AGENT = "eChat-Gateway-Webhooks/1"
#: Seconds a URL's checked address is used before it is looked up again.
TARGET_TTL = 60.0
#: Seconds between purges of old delivered deliveries, and the rows one purge statement deletes.
PURGE_INTERVAL = 300.0
PURGE_BATCH = 1000
#: Rounds of slots claimed ahead: a claim's cost is shared by this many posts per slot.
PREFETCH = 4


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    secret: str
    #: The secret before a rotation, signed with too until ``previous_until`` (its grace period).
    previous: str | None = None
    previous_until: datetime | None = None

    def secrets(self, now: datetime) -> tuple[str, ...]:
        if self.previous is not None and self.previous_until is not None and now < self.previous_until:
            return (self.previous,)
        return ()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


class TargetCache:
    """Each URL's checked address, kept ``ttl`` seconds, so a post does not wait for a DNS answer each
    time; a refused URL is not kept (checked again at its next post)."""

    def __init__(self, ttl: float = TARGET_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._kept: dict[str, tuple[VettedTarget, float]] = {}

    async def get(self, url: str, allow: Collection[str]) -> VettedTarget:
        now = self._clock()
        kept = self._kept.get(url)
        if kept is not None and kept[1] > now:
            return kept[0]
        target = await vetted_target(url, allow)
        self._kept = {u: k for u, k in self._kept.items() if k[1] > now}  # forget URLs no longer posted to
        self._kept[url] = (target, now + self._ttl)
        return target


def take_in_turn(
    queued: dict[int, deque[ClaimedDelivery]],
    in_flight: dict[int, int],
    concurrency: int,
    per_subscription: int,
    turn: int,
) -> list[ClaimedDelivery]:
    """Takes the deliveries to start now off ``queued`` (counting them in ``in_flight``): one of each
    subscription with a free slot in turn, beginning at the ``turn``-th, until the global slots run out."""
    order = sorted(queued)
    if not order:
        return []
    start = turn % len(order)
    order = order[start:] + order[:start]
    posting = sum(in_flight.values())
    taken: list[ClaimedDelivery] = []
    while posting < concurrency:
        ready = [s for s in order if queued[s] and in_flight.get(s, 0) < per_subscription]
        if not ready:
            break
        for subscription_id in ready[: concurrency - posting]:
            taken.append(queued[subscription_id].popleft())
            in_flight[subscription_id] = in_flight.get(subscription_id, 0) + 1
            posting += 1
    return taken


class WebhookDeliverer:
    """Posts the queued deliveries of the active subscriptions. ``refresh`` once before MOs are taken,
    then ``run_loop`` in the daemon's TaskGroup (cancelled at shutdown: the leases of what was in flight
    expire and those are posted again)."""

    def __init__(
        self,
        store: Store,
        settings: WebhooksConfig,
        targets: WebhookTargets,
        *,
        bus: EventBus | None = None,
        health: LoopHealth | None = None,
    ) -> None:
        self._store = store
        self.settings = settings
        self.targets = targets
        self._bus = bus
        self._health = health or LoopHealth()
        self._endpoints: dict[int, Endpoint] = {}
        #: Per subscription: deliveries being posted, and claimed ones waiting for a slot.
        self._in_flight: dict[int, int] = {}
        self._queued: dict[int, deque[ClaimedDelivery]] = {}
        #: Ids of the deliveries being posted (never claimed again while they are).
        self._posting: set[int] = set()
        #: Posted, their outcome not written yet: (delivery, outcome, when).
        self._outcomes: list[tuple[ClaimedDelivery, Outcome, datetime]] = []
        #: Claimed and not posted: their leases to give back.
        self._unposted: list[ClaimedDelivery] = []
        self._group: asyncio.TaskGroup | None = None
        self._targets = TargetCache()
        #: Where the next dispatch starts among the subscriptions.
        self._turn = 0
        self._wakeup = asyncio.Event()
        #: Deliveries posted with a 2xx answer, and failed tries, since start.
        self.delivered = 0
        self.failed = 0

    async def refresh(self) -> None:
        """Reads the active subscriptions again (enqueue side and endpoints)."""
        async with self._store.sessions() as session:
            subscriptions = await active_subscriptions(session)
        self.targets.replace(subscriptions)
        self._endpoints = {
            s.id: Endpoint(s.url, s.secret, s.previous_secret, s.previous_secret_until) for s in subscriptions
        }
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run_loop(self) -> None:
        timeout = httpx.Timeout(self.settings.timeout)
        limits = httpx.Limits(max_connections=self.settings.concurrency)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=timeout, limits=limits, follow_redirects=False, trust_env=False
                ) as client,
                asyncio.TaskGroup() as group,
            ):
                await self._loop(client, group)
        finally:
            self._unposted.extend(delivery for queue in self._queued.values() for delivery in queue)
            self._queued.clear()
            await self._release()

    async def _loop(self, client: httpx.AsyncClient, group: asyncio.TaskGroup) -> None:
        self._group = group
        group.create_task(self._refresh_loop(), name="webhooks.refresh_loop")
        group.create_task(self._purge_loop(), name="webhooks.purge_loop")
        while True:
            self._wakeup.clear()
            recorded = await self._record_outcomes()
            await self._release()
            self._dispatch(client)
            # claim when some subscription has less than a round of slots waiting: in between, a
            # pass only records and starts posts
            low = any(len(self._queued.get(s, ())) < self.settings.per_subscription for s in self._endpoints)
            claimed = await self._claim() if low else []
            for delivery in claimed:
                self._queued.setdefault(delivery.subscription_id, deque()).append(delivery)
            self._dispatch(client)
            if not claimed and not recorded:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await self._wakeup.wait()

    def _dispatch(self, client: httpx.AsyncClient) -> None:
        """Starts the claimed deliveries there are slots for, one per subscription in turn (the turn
        starting one subscription further each time), so a busy one never takes every global slot."""
        group = self._group
        if group is None:
            return
        self._turn += 1
        for delivery in take_in_turn(
            self._queued,
            self._in_flight,
            self.settings.concurrency,
            self.settings.per_subscription,
            self._turn,
        ):
            group.create_task(self._deliver(client, delivery), name=f"webhooks.deliver[{delivery.id}]")

    async def _refresh_loop(self) -> None:
        """Reads the subscriptions when a panel announces a change, and every ``refresh_interval``."""
        async with contextlib.AsyncExitStack() as stack:
            changes = None
            if self._bus is not None:
                changes = await stack.enter_async_context(
                    self._bus.subscribe(self._bus.topics.webhooks_changed())
                )
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.refresh_interval):
                        if changes is None:
                            await asyncio.Event().wait()
                        else:
                            await changes.get()
                try:
                    await self.refresh()
                except Exception as error:  # the next change or interval reads them again
                    self._health.failed("webhooks.refresh", error)
                    log_event(log, "webhooks.refresh_failed", logging.WARNING, error=str(error))

    async def _purge_loop(self) -> None:
        """Deletes the deliveries delivered more than ``keep_delivered_days`` ago, a batch per
        transaction, every :data:`PURGE_INTERVAL` seconds (at start too)."""
        while True:
            before = datetime.now(UTC) - timedelta(days=self.settings.keep_delivered_days)
            try:
                await self.purge(before)
            except Exception as error:  # the next interval tries again
                self._health.failed("webhooks.purge", error)
                log_event(log, "webhooks.purge_failed", logging.WARNING, error=str(error))
            else:
                self._health.succeeded("webhooks.purge")
            await asyncio.sleep(PURGE_INTERVAL)

    async def purge(self, before: datetime) -> int:
        """Deletes the deliveries delivered before ``before``; how many."""
        purged = 0
        while True:
            async with self._store.transaction() as session:
                deleted = await purge_delivered(session, before, PURGE_BATCH)
            purged += deleted
            if deleted < PURGE_BATCH:
                return purged

    async def _claim(self) -> list[ClaimedDelivery]:
        """Leases due deliveries up to :data:`PREFETCH` rounds of each subscription's slots (one claim
        feeds many posts), within ``PREFETCH`` rounds of the global ones."""
        settings = self.settings
        held = {
            subscription_id: self._in_flight.get(subscription_id, 0)
            + len(self._queued.get(subscription_id, ()))
            for subscription_id in self._endpoints
        }
        room = (
            settings.concurrency * PREFETCH
            - sum(self._in_flight.values())
            - sum(map(len, self._queued.values()))
        )
        free = {
            subscription_id: settings.per_subscription * PREFETCH - count
            for subscription_id, count in held.items()
            if count < settings.per_subscription * PREFETCH
        }
        if room < 1 or not free:
            return []
        # each subscription's fair share of the room, so a busy one never takes it all
        share = max(1, room // len(free))
        free = {subscription_id: min(count, share) for subscription_id, count in free.items()}
        held_ids = {delivery.id for queue in self._queued.values() for delivery in queue} | self._posting
        now = datetime.now(UTC)
        # long enough for a claimed delivery to wait its turn behind PREFETCH rounds of time-outs
        lease_until = now + timedelta(seconds=(PREFETCH + 1) * settings.timeout + 30)
        try:
            async with self._store.transaction() as session:
                claimed = await self._store.webhook_queue.claim(
                    session, free, now, lease_until, held=held_ids
                )
        except Exception as error:  # the database is away: the next pass tries again
            self._health.failed("webhooks.claim", error)
            log_event(log, "webhooks.claim_failed", logging.WARNING, error=str(error))
            return []
        self._health.succeeded("webhooks.claim")
        return claimed

    async def _deliver(self, client: httpx.AsyncClient, delivery: ClaimedDelivery) -> None:
        self._posting.add(delivery.id)
        try:
            endpoint = self._endpoints.get(delivery.subscription_id)
            if endpoint is None:  # made inactive meanwhile: its lease is given back
                self._unposted.append(delivery)
                return
            now = datetime.now(UTC)
            if now + timedelta(seconds=self.settings.timeout) >= delivery.lease_until:
                return  # the lease would run out during the post: it is another claim's to take
            if now - delivery.queued_at >= timedelta(seconds=self.settings.max_age):
                # too old to post (a backlog kept while its subscription was disabled): dead unposted
                outcome = Outcome(None, "older than max_age: not posted")
            else:
                outcome = await self._post(client, endpoint, delivery)
            self._outcomes.append((delivery, outcome, datetime.now(UTC)))
        finally:
            self._posting.discard(delivery.id)
            self._in_flight[delivery.subscription_id] -= 1
            self._wakeup.set()
        self._dispatch(client)  # the next claimed one at once: posts do not wait for the bookkeeping

    async def _release(self) -> None:
        """Gives back the leases of claimed deliveries that were not posted."""
        unposted, self._unposted = self._unposted, []
        if not unposted:
            return
        try:
            async with self._store.transaction() as session:
                await release(session, unposted, datetime.now(UTC))
        except Exception as error:  # not given back: their leases expire
            self._health.failed("webhooks.release", error)
            log_event(log, "webhooks.release_failed", logging.WARNING, error=str(error))

    async def _post(
        self, client: httpx.AsyncClient, endpoint: Endpoint, delivery: ClaimedDelivery
    ) -> Outcome:
        body = delivery.payload.encode("utf-8")
        try:
            # the DNS look-up (cached) and the post within the one time-out
            async with asyncio.timeout(self.settings.timeout):
                target = await self._targets.get(endpoint.url, self.settings.allow)
                url, host, extensions = pinned(endpoint.url, target)
                headers = {
                    **host,
                    "content-type": "application/json",
                    "user-agent": USER_AGENT,
                    SIGNATURE_HEADER: signature(
                        endpoint.secret, int(time.time()), body, *endpoint.secrets(datetime.now(UTC))
                    ),
                    DELIVERY_HEADER: str(delivery.id),
                    EVENT_HEADER: delivery.event,
                }
                async with client.stream(
                    "POST", url, content=body, headers=headers, extensions=extensions
                ) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE:
                            break
                    status = response.status_code
        except UnsafeTarget as error:
            return Outcome(None, f"target refused: {error.refusal.value}")
        except (httpx.HTTPError, TimeoutError, OSError) as error:
            return Outcome(None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        if 200 <= status < 300:
            return Outcome(status, None)
        return Outcome(status, f"HTTP {status}")

    async def _record_outcomes(self) -> bool:
        """Writes the outcomes posted since the last pass, in one transaction; whether there were any."""
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return False
        settings = self.settings
        queue = self._store.webhook_queue
        now = datetime.now(UTC)
        try:
            async with self._store.transaction() as session:
                delivered = [
                    (delivery, outcome.status or 0, at)
                    for delivery, outcome, at in outcomes
                    if outcome.delivered
                ]
                await record_delivered(queue, session, delivered, now)
                for delivery, outcome, at in outcomes:
                    if outcome.delivered:
                        continue
                    attempts = delivery.attempts + 1
                    expired = at - delivery.queued_at >= timedelta(seconds=settings.max_age)
                    retry_at = None
                    if attempts < settings.max_attempts and not expired:
                        delay = backoff(attempts, settings.backoff_initial, settings.backoff_max)
                        retry_at = at + timedelta(seconds=delay)
                    error = outcome.error or ""
                    await record_failed(
                        queue, session, delivery, outcome.status, error, retry_at=retry_at, now=now
                    )
        except Exception as error:  # not recorded: the leases expire and these are posted again
            self._health.failed("webhooks.record", error)
            log_event(
                log, "webhooks.record_failed", logging.WARNING, deliveries=len(outcomes), error=str(error)
            )
            return True
        self._health.succeeded("webhooks.record")
        for delivery, outcome, _ in outcomes:
            if outcome.delivered:
                self.delivered += 1
                continue
            self.failed += 1
            log_event(
                log,
                "webhooks.delivery_failed",
                logging.INFO,
                delivery=delivery.id,
                subscription=delivery.subscription_id,
                status=outcome.status,
                error=outcome.error,
            )
        return True
