"""The outbox: the one way an MT is queued, whoever produces it (the desk's replies and pushes,
``gatewayd send``, the MO pipeline's keyword answers, the mass push's sender; later the API).

For each :class:`MTRequest` the :class:`Outbox`

1. finds the subscriber (by id, else by number) and applies the recipient rule
   (:func:`gatewayd.store.mt.recipients.refusal`: the one rule; the claim re-checks it at send time);
2. picks carrier, source short code and bind (:meth:`Outbox.route`): the MO it answers, else the
   subscriber's latest MO, else the subscriber's known carrier, else the first carrier serving the
   number's country; the request may name carrier and source;
3. renders the manual's message variables (:func:`routing.variables.render_template`) in the text:
   ``mensaje``, ``host``, ``operador``, ``telefono``, ``hora``, ``fecha``, ``pais``, times in the
   service's zone (:meth:`OutboxSettings.zone`). Without an MO (a push) ``mensaje`` is empty and
   ``hora`` / ``fecha`` are the time of queueing;
4. holds a push to a client in their quiet hours (:mod:`routing.quiet_hours`, ``[quiet_hours]``): it is
   queued with ``next_attempt_at`` at the end of the quiet period (the claim waits for it), its
   history line saying so. Replies, system messages and ban notices are never held, nor a push to a
   client who wrote within the rule's ``recent`` window (their latest MO, read with the routing's);
5. stores the MTs (``gatewayd.store.mt.queue``), and once they are committed
6. publishes each one's ``queued`` status and one ``outbox/queued`` wake-up on the bus, and wakes the
   daemon in its own process (:meth:`Outbox.announce`).

:meth:`Outbox.queue` does it all in a transaction of its own. :meth:`Outbox.queue_in` works in the
caller's transaction (the MO pipeline queues keyword answers in the commit that stores their MOs; the
desk checks the conversation in the transaction that queues the reply): the caller commits, then
calls :meth:`Outbox.announce` with what it returned.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatewayd.bus import EventBus
from gatewayd.config import CarrierConfig, Config, ServiceConfig
from gatewayd.events import mt_status_payload
from gatewayd.logging import log_event
from gatewayd.premium import Billable, Notice, Premium, PremiumSettings
from gatewayd.store.enums import MTKind
from gatewayd.store.errors import MTRefused
from gatewayd.store.mt.queue import ANY_DATABASE, MTInserts, queue_mts
from gatewayd.store.mt.recipients import BILLED_KINDS, Recipient, Refusal, recipients, refusal
from gatewayd.store.mt.status import MTState, mt_state
from gatewayd.store.mt.values import NewMT
from gatewayd.store.repo_desk import LastMO, last_mos_of_subscribers
from routing.errors import InvalidNumber
from routing.numbers import country_of, normalise_msisdn, to_international
from routing.premium import PremiumState
from routing.quiet_hours import QuietRule
from routing.variables import message_variables, render_template
from smpp.errors import SMPPError
from smpp.text import DraftInfo, draft_info

log = logging.getLogger("gatewayd.outbox")

#: The MO an MT answers: its carrier, short code and bind are the reply's way out, its text and time
#: the variables' ``mensaje``, ``hora`` and ``fecha``.
AnsweredMO = LastMO


#: The longest MT the outbox takes, in segments (SMS on the air).
MAX_SEGMENTS = 10


class OutboxError(ValueError):
    """The MT cannot be queued as asked (unknown carrier, unreadable number, no carrier or short code
    for it); the message says what to give."""


class InvalidDestination(OutboxError):
    """The number cannot be read as a phone number."""


class TextRefused(OutboxError):
    """The text, rendered, cannot be sent: ``reason`` is ``empty``, ``unencodable`` (no SMS coding
    holds it) or ``too_long`` (over :data:`MAX_SEGMENTS` segments)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the text cannot be sent: {reason.replace('_', ' ')}")
        self.reason = reason


def shows_nothing(text: str) -> bool:
    """Only white space, control and format characters (a zero-width space, a byte-order mark, a
    direction mark, tag characters): a phone shows an empty SMS, which the client still pays for."""
    stripped = text.strip()
    if stripped.isprintable():  # the usual text: no scan
        return not stripped
    return all(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in stripped)


def check_text(text: str) -> DraftInfo:
    """What ``text`` costs as an SMS; :class:`TextRefused` when it cannot be sent."""
    if shows_nothing(text):
        raise TextRefused("empty")
    try:
        info = draft_info(text, max_segments=MAX_SEGMENTS)
    except SMPPError as error:
        raise TextRefused("unencodable") from error
    if not info.fits:
        raise TextRefused("too_long")
    return info


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """What the outbox reads of the configuration: the carriers (to pick one for a number nobody
    answered yet), the services with their time zones (``hora`` and ``fecha``) and the quiet hours
    pushes wait out (None: none, as in tests that do not ask for them)."""

    carriers: tuple[CarrierConfig, ...] = ()
    services: tuple[ServiceConfig, ...] = ()
    #: ``[daemon] timezone``: the zone of a short code no service names.
    timezone: str = "Europe/Madrid"
    quiet: QuietRule | None = None
    #: The billed services' terms (price notice, acceptance, spend control).
    premium: PremiumSettings = field(default_factory=PremiumSettings)

    @classmethod
    def from_config(cls, config: Config) -> OutboxSettings:
        return cls(
            config.carriers,
            config.services,
            config.daemon.timezone,
            config.quiet_rule(),
            PremiumSettings.from_config(config),
        )

    def zone(self, service: str | None, short_code: str) -> ZoneInfo:
        """The time zone of the service by name (the MO's), else of the first service on the short
        code, else the default."""
        for item in self.services:
            if service is not None and item.name == service:
                return item.zone
        for item in self.services:
            if item.short_code == short_code:
                return item.zone
        return ZoneInfo(self.timezone)

    def carrier(self, name: str) -> CarrierConfig | None:
        return next((item for item in self.carriers if item.name == name), None)

    @staticmethod
    def client_country(country: str | None, destination: str) -> str | None:
        """The country whose quiet hours a client keeps: theirs as known, else their number's."""
        return country or country_of("+" + destination)

    def client_zone(self, country: str | None, destination: str) -> ZoneInfo | None:
        """The zone a client's quiet hours are read in (None: no quiet hours configured)."""
        quiet = self.quiet
        return quiet.zone(self.client_country(country, destination)) if quiet is not None else None


@dataclass(frozen=True, slots=True)
class MTRequest:
    """One MT to queue. ``to``: the number in any form ``routing.numbers`` reads (E.164 with or
    without '+', or national for the first carrier's country); ``subscriber_id`` spares the look-up.
    ``text`` is a template: ``{telefono}`` and the other variables are rendered. ``mo``: the MO it
    answers (a reply, a keyword answer). ``carrier`` / ``source`` / ``bind_name``: given, they are
    used as they are; else the outbox picks them."""

    to: str
    text: str
    kind: MTKind = MTKind.PUSH
    priority: int = 0
    carrier: str | None = None
    source: str | None = None
    bind_name: str | None = None
    subscriber_id: int | None = None
    conversation_id: int | None = None
    operator_id: int | None = None
    mo: AnsweredMO | None = None
    #: Variables besides the manual's (a premium notice's ``{precio}``, ``{proveedor}``...).
    extra_variables: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """Where an MT leaves: carrier, source short code, bind (None: any of the carrier's)."""

    carrier: str
    source: str
    bind_name: str | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request made ready to store: its destination digits, its subscriber, its route and its text
    rendered (``variables`` are what was put in); ``held_until``: a push held for the client's quiet
    hours leaves then (UTC), in ``zone``."""

    request: MTRequest
    destination: str
    recipient: Recipient | None
    route: Route
    text: str
    variables: dict[str, str]
    held_until: datetime | None = None
    zone: ZoneInfo | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """An MT stored in the outbox (committed once the caller's transaction is)."""

    mt_id: int
    prepared: Prepared
    at: datetime

    @property
    def held_until(self) -> datetime | None:
        """When a push held for the client's quiet hours leaves (UTC); None: as soon as it can."""
        return self.prepared.held_until


@dataclass(slots=True)
class Batch:
    """What :meth:`Outbox.queue_in` did: per request (in order) the MT queued, or why not."""

    outcomes: list[Queued | Refusal] = field(default_factory=list)
    #: The premium notices the requests brought (a spend step crossed), queued with them.
    notices: list[Queued] = field(default_factory=list)

    @property
    def queued(self) -> list[Queued]:
        return [outcome for outcome in self.outcomes if isinstance(outcome, Queued)] + self.notices


class Outbox:
    """The one entry of the MT outbox. ``sessions`` for :meth:`queue` (its own transaction); ``bus``
    for the ``queued`` events and the daemons' wake-up (None: the daemons find the MTs at their next
    poll); ``wake``: the sender in this process, woken at once; ``inserts``: how the MTs are written,
    the store's (``Store.mt_inserts``: PostgreSQL's array statement), else statements for any database."""

    def __init__(
        self,
        settings: OutboxSettings,
        *,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        bus: EventBus | None = None,
        wake: Callable[[], None] | None = None,
        inserts: MTInserts = ANY_DATABASE,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self.bus = bus
        self._wake = wake
        self._inserts = inserts

    # --- the entries ---------------------------------------------------------------------------------

    async def queue(self, request: MTRequest, now: datetime | None = None) -> Queued:
        """Queues one MT in a transaction of its own and announces it. Raises :class:`OutboxError`, or
        ``MTRefused`` when the subscriber may not receive it."""
        if self._sessions is None:
            raise RuntimeError("this outbox has no sessions: use queue_in with the caller's session")
        async with self._sessions() as session, session.begin():
            queued = await self.queue_one_in(session, request, now)
        await self.announce([queued])
        return queued

    async def queue_one_in(
        self, session: AsyncSession, request: MTRequest, now: datetime | None = None
    ) -> Queued:
        """:meth:`queue_in` for one request: the MT queued, or ``MTRefused`` raised."""
        outcome = (await self.queue_in(session, [request], now)).outcomes[0]
        if isinstance(outcome, Refusal):
            raise MTRefused(request.to, outcome.reason)
        return outcome

    async def queue_in(
        self, session: AsyncSession, requests: Sequence[MTRequest], now: datetime | None = None
    ) -> Batch:
        """Queues the requests in the caller's transaction; those the recipient rule refuses are left
        out (their :class:`Refusal` in the batch). Raises :class:`OutboxError` when one cannot be
        routed, :class:`TextRefused` when one's rendered text cannot be sent (nothing is queued then).
        After the commit, call :meth:`announce` with ``.queued``."""
        now = now or datetime.now(UTC)
        prepared = await self.prepare(session, requests, now)
        for item in prepared:
            check_text(item.text)
        outcomes, notices = await self._store(session, prepared, now)
        # Every item was prepared: none is an error.
        return Batch([outcome for outcome in outcomes if not isinstance(outcome, OutboxError)], notices)

    async def queue_each_in(
        self, session: AsyncSession, requests: Sequence[MTRequest], now: datetime | None = None
    ) -> list[Queued | Refusal | OutboxError]:
        """:meth:`queue_in` for independent requests (the API's batches): one that cannot be routed or
        whose text cannot be sent is left out alone, its :class:`OutboxError` (or :class:`TextRefused`)
        in its place; the others are queued. After the commit, :meth:`announce` the queued ones (the
        daemons' wake-up also brings the premium notices queued with them)."""
        now = now or datetime.now(UTC)
        prepared: list[Prepared | OutboxError] = []
        for item in await self._prepare_each(session, requests, now):
            if isinstance(item, Prepared):
                try:
                    check_text(item.text)
                except TextRefused as error:
                    item = error
            prepared.append(item)
        return (await self._store(session, prepared, now))[0]

    async def _store(
        self, session: AsyncSession, prepared: Sequence[Prepared | OutboxError], now: datetime
    ) -> tuple[list[Queued | Refusal | OutboxError], list[Queued]]:
        """Stores the prepared MTs the recipient rule allows; per item its MT, refusal or error, and
        the premium notices queued after them. Billed MTs from a billed service's short code are
        applied to the clients' premium accounts first (:meth:`_charge`): charged, or refused by the
        same rule in the state that refuses them."""
        decided: list[Refusal | OutboxError | None] = [
            item
            if isinstance(item, OutboxError)
            else item.recipient.refusal(item.request.kind, item.route.source, now)
            if item.recipient is not None
            else None
            for item in prepared
        ]
        charged: dict[int, int] = {}
        notices: list[tuple[Notice, Prepared]] = []
        if self.settings.premium.terms:
            charged, notices = await self._charge(session, prepared, decided, now)
        allowed = [
            (index, item)
            for index, (item, refused) in enumerate(zip(prepared, decided, strict=True))
            if refused is None and isinstance(item, Prepared)
        ]
        ids = iter(
            await queue_mts(
                session,
                [_new_mt(item, charged.get(index)) for index, item in allowed],
                now,
                self._inserts,
            )
        )
        outcomes: list[Queued | Refusal | OutboxError] = []
        for item, refused in zip(prepared, decided, strict=True):
            if refused is not None:
                outcomes.append(refused)
            else:
                assert isinstance(item, Prepared)  # an error is its own refusal
                outcomes.append(Queued(next(ids), item, now))
        return outcomes, await self._notify(session, notices, now) if notices else []

    async def _charge(
        self,
        session: AsyncSession,
        prepared: Sequence[Prepared | OutboxError],
        decided: list[Refusal | OutboxError | None],
        now: datetime,
    ) -> tuple[dict[int, int], list[tuple[Notice, Prepared]]]:
        """The billed MTs from billed short codes, applied to their clients' premium accounts
        (``gatewayd.premium``): their charges by index (per SMS part), the refusals written into
        ``decided`` (a client never sent the price notice, a cap that would be passed), and the step notices
        with the MT that crossed the step."""
        settings = self.settings.premium
        billable: list[Billable] = []
        for index, (item, refused) in enumerate(zip(prepared, decided, strict=True)):
            if refused is not None or not isinstance(item, Prepared):
                continue
            source = item.route.source
            if item.request.kind not in BILLED_KINDS or source not in settings.services_by_code:
                continue
            if item.recipient is None:  # never wrote: no price notice yet, and no account to charge
                decided[index] = _premium_refusal(item.request.kind, PremiumState.AWAITING)
                continue
            parts = check_text(item.text).segments
            billable.append(Billable(index, item.recipient.id, item.recipient.client_id, source, parts))
        if not billable:
            return {}, []
        charges = await Premium(settings).charge(session, billable, now)
        for index, state in charges.refused.items():
            refused_item = prepared[index]
            assert isinstance(refused_item, Prepared)
            decided[index] = _premium_refusal(refused_item.request.kind, state)
        notices: list[tuple[Notice, Prepared]] = []
        for notice in charges.notices:
            item = prepared[notice.index]
            assert isinstance(item, Prepared)
            notices.append((notice, item))
        return charges.charged, notices

    async def _notify(
        self, session: AsyncSession, notices: Sequence[tuple[Notice, Prepared]], now: datetime
    ) -> list[Queued]:
        """Queues the premium notices (``SYSTEM``: free, never charged) by the way their MT took, and
        audits each with its MT; the notice of a push held for the client's quiet hours is held with
        it. A notice whose text cannot be sent (a step's text too long once rendered) is left out and
        logged: the MT that crossed the step is not refused for it."""
        requests = [
            MTRequest(
                to=item.destination,
                text=notice.text,
                kind=MTKind.SYSTEM,
                carrier=item.route.carrier,
                source=item.route.source,
                bind_name=item.route.bind_name,
                subscriber_id=notice.subscriber_id,
                conversation_id=item.request.conversation_id,
                mo=item.request.mo,
                extra_variables=tuple(notice.variables.items()),
            )
            for notice, item in notices
        ]
        prepared: list[Prepared | OutboxError] = []
        for (_, crossing), item in zip(
            notices, await self._prepare_each(session, requests, now), strict=True
        ):
            if isinstance(item, Prepared):
                if crossing.held_until is not None:  # a push held for quiet hours: its notice waits with it
                    item = replace(item, held_until=crossing.held_until, zone=crossing.zone)
                try:
                    check_text(item.text)
                except TextRefused as error:
                    item = error
            if isinstance(item, OutboxError):
                log_event(log, "outbox.premium_notice_not_queued", logging.WARNING, reason=str(item))
            prepared.append(item)
        outcomes, _ = await self._store(session, prepared, now)
        await Premium.audit(
            session,
            [
                (notice, outcome.mt_id if isinstance(outcome, Queued) else None)
                for (notice, _), outcome in zip(notices, outcomes, strict=True)
            ],
            now,
        )
        return [outcome for outcome in outcomes if isinstance(outcome, Queued)]

    async def announce(self, queued: Sequence[Queued]) -> None:
        """After the commit: each MT's ``queued`` status on the bus (with the operator and the
        conversation of a desk's MT), one ``outbox/queued`` so the daemons claim now, and this
        process's sender woken. Best effort: the MTs are stored, a daemon polls for them anyway."""
        if not queued:
            return
        try:
            await self._publish(queued)
        finally:  # after the events: a status the sender publishes never overtakes ``queued``
            if self._wake is not None:
                self._wake()

    async def _publish(self, queued: Sequence[Queued]) -> None:
        bus = self.bus
        if bus is None:
            return
        try:
            for item in queued:
                request = item.prepared.request
                extra = {
                    name: value
                    for name, value in (
                        ("operator_id", request.operator_id),
                        ("conversation_id", request.conversation_id),
                    )
                    if value is not None
                }
                payload = {**mt_status_payload(item.mt_id, "queued", None, None, item.at), **extra}
                await bus.publish(bus.topics.mt_status(item.mt_id), payload)
            await bus.publish(bus.topics.outbox_queued(), {"mt_id": queued[0].mt_id, "count": len(queued)})
        except Exception as error:  # the MTs are committed: their events are best effort
            log_event(log, "outbox.announce_failed", logging.WARNING, mts=len(queued), error=repr(error))

    # --- the decisions -------------------------------------------------------------------------------

    async def prepare(
        self, session: AsyncSession, requests: Sequence[MTRequest], now: datetime
    ) -> list[Prepared]:
        """Each request with its subscriber, route and rendered text (read in ``session``; nothing
        written; the texts are not checked: :func:`check_text`). Raises :class:`OutboxError` for a
        request that cannot be routed."""
        prepared: list[Prepared] = []
        for item in await self._prepare_each(session, requests, now):
            if isinstance(item, OutboxError):
                raise item
            prepared.append(item)
        return prepared

    async def _prepare_each(
        self, session: AsyncSession, requests: Sequence[MTRequest], now: datetime
    ) -> list[Prepared | OutboxError]:
        """:meth:`prepare`, with the :class:`OutboxError` of a request that cannot be routed in its place."""
        destinations: list[str | OutboxError] = []
        for request in requests:
            try:
                destinations.append(self.destination(request))
            except OutboxError as error:
                destinations.append(error)
        found = await recipients(
            session,
            ids=[request.subscriber_id for request in requests if request.subscriber_id is not None],
            msisdns=[
                digits
                for request, digits in zip(requests, destinations, strict=True)
                if request.subscriber_id is None and isinstance(digits, str)
            ],
            premium=bool(self.settings.premium.terms)
            and any(request.kind in BILLED_KINDS for request in requests),
        )
        by_id = {recipient.id: recipient for recipient in found}
        by_msisdn = {recipient.msisdn: recipient for recipient in found}
        found_of = [
            None
            if isinstance(digits, OutboxError)
            else (by_id.get(request.subscriber_id) if request.subscriber_id is not None else None)
            or by_msisdn.get(digits)
            for request, digits in zip(requests, destinations, strict=True)
        ]
        # the latest MO routes what neither answers an MO nor names its way out, and says whether a
        # push's client just wrote (quiet hours): one statement for all
        unrouted = [
            recipient is not None
            and request.mo is None
            and (request.carrier is None or request.source is None)
            for request, recipient in zip(requests, found_of, strict=True)
        ]
        # a push may be held only in its client's quiet hours (pure): by day, no MO is read for it
        holdable = [
            isinstance(digits, str) and self._in_quiet_hours(request, digits, recipient, now)
            for request, digits, recipient in zip(requests, destinations, found_of, strict=True)
        ]
        latest = await last_mos_of_subscribers(
            session,
            [
                recipient.id
                for recipient, wanted, push in zip(found_of, unrouted, holdable, strict=True)
                if recipient and (wanted or push)
            ],
        )
        prepared: list[Prepared | OutboxError] = []
        for request, digits, recipient, wanted, push in zip(
            requests, destinations, found_of, unrouted, holdable, strict=True
        ):
            if isinstance(digits, OutboxError):
                prepared.append(digits)
                continue
            last = latest.get(recipient.id) if recipient is not None else None
            try:
                route = self.route(request, digits, recipient, last if wanted else None)
            except OutboxError as error:
                prepared.append(error)
                continue
            variables = self.variables(request, digits, recipient, route, now)
            if request.extra_variables:
                variables = {**dict(request.extra_variables), **variables}
            text = render_template(request.text, variables)
            item = Prepared(request, digits, recipient, route, text, variables)
            if push:
                item = self._held(item, last, now)
            prepared.append(item)
        return prepared

    def _in_quiet_hours(
        self, request: MTRequest, digits: str, recipient: Recipient | None, now: datetime
    ) -> bool:
        """Whether ``request`` is a push whose client is in their quiet hours at ``now``."""
        quiet = self.settings.quiet
        if quiet is None or request.kind is not MTKind.PUSH:
            return False
        return quiet.quiet_for(
            self.settings.client_country(recipient.country if recipient else None, digits), now
        )

    async def release_held(
        self, session: AsyncSession, writers: Sequence[tuple[int, str | None, str]], now: datetime
    ) -> list[int]:
        """The pushes held for the quiet hours of clients who just wrote (subscriber id, country,
        MSISDN), made due now: awake, they are answered, not woken (an MO in their quiet hours spares
        a push queued after it, and one queued before it as well). Only a client in their quiet hours
        can have a held push: by day no statement. The ids released."""
        asleep = self._asleep([(country, msisdn) for _, country, msisdn in writers], now)
        ids = [subscriber_id for (subscriber_id, _, _), quiet in zip(writers, asleep, strict=True) if quiet]
        return await self._inserts.release_held(session, ids, now)

    def msisdns_in_quiet_hours(
        self, clients: Iterable[tuple[str | None, str]], now: datetime
    ) -> frozenset[str]:
        """The MSISDNs of these clients (country, MSISDN) in their quiet hours now: those whose MO
        would release pushes held for them (the MO pipeline asks its ingest whether they have any)."""
        clients = list(clients)
        asleep = self._asleep(clients, now)
        return frozenset(msisdn for (_, msisdn), quiet in zip(clients, asleep, strict=True) if quiet)

    def _asleep(self, clients: Sequence[tuple[str | None, str]], now: datetime) -> list[bool]:
        """Whether each client (country, MSISDN) is in their quiet hours now."""
        quiet = self.settings.quiet
        if quiet is None:
            return [False] * len(clients)
        # one look at the clock per country, not per MO: a batch's writers share a handful of them
        quiet_in: dict[str | None, bool] = {}
        asleep: list[bool] = []
        for country, msisdn in clients:
            client_country = self.settings.client_country(country, msisdn)
            in_quiet = quiet_in.get(client_country)
            if in_quiet is None:
                in_quiet = quiet_in[client_country] = quiet.quiet_for(client_country, now)
            asleep.append(in_quiet)
        return asleep

    def _held(self, item: Prepared, last: AnsweredMO | None, now: datetime) -> Prepared:
        """The push held until the client's quiet hours end, unless they just wrote."""
        quiet = self.settings.quiet
        assert quiet is not None
        recipient = item.recipient
        country = self.settings.client_country(recipient.country if recipient else None, item.destination)
        wrote = max(
            (mo.received_at for mo in (item.request.mo, last) if mo is not None),
            default=None,
            key=_utc,
        )
        until = quiet.held_until(country, now, wrote)
        return replace(item, held_until=until, zone=quiet.zone(country)) if until is not None else item

    def destination(self, request: MTRequest) -> str:
        """The request's number as the store keeps it (E.164 digits without '+')."""
        if request.to.isascii() and request.to.isdigit() and request.subscriber_id is not None:
            return request.to  # from the store or the MO pipeline: digits already
        default_country = self.settings.carriers[0].country if self.settings.carriers else None
        try:
            return to_international(normalise_msisdn(request.to, default_country))
        except InvalidNumber as error:
            raise InvalidDestination(str(error)) from error

    def route(
        self, request: MTRequest, digits: str, recipient: Recipient | None, latest: AnsweredMO | None
    ) -> Route:
        """Carrier, source and bind: what the request names; else the MO it answers (a reply leaves
        by the carrier, short code and bind the MO came by), else the subscriber's latest MO; else
        the subscriber's known carrier, else the first carrier serving the number's country, with
        that carrier's first short code."""
        by = request.mo or latest
        carrier = request.carrier
        if carrier is None and by is not None:
            carrier = by.carrier
        if carrier is None and recipient is not None:
            carrier = recipient.carrier
        if carrier is None:
            country = country_of("+" + digits)
            serving = next((item for item in self.settings.carriers if item.country == country), None)
            if serving is None:
                raise OutboxError(
                    f"no carrier serves +{digits} (country {country or 'unknown'}); give a carrier"
                )
            carrier = serving.name
        elif (
            request.carrier is not None and self.settings.carriers and self.settings.carrier(carrier) is None
        ):
            names = ", ".join(item.name for item in self.settings.carriers)
            raise OutboxError(f"unknown carrier {carrier!r} (configured: {names})")
        same_way = by is not None and by.carrier == carrier
        source = request.source
        if source is not None:
            self._check_source(carrier, source, by if same_way else None)
        if source is None and same_way:
            assert by is not None
            source = by.short_code
        if source is None:
            configured = self.settings.carrier(carrier)
            if configured is None or not configured.short_codes:
                raise OutboxError(f"carrier {carrier} has no short code; give a source")
            source = configured.short_codes[0]
        bind_name = request.bind_name
        if bind_name is None and same_way and by is not None and by.short_code == source:
            bind_name = by.bind_name
        return Route(carrier, source, bind_name)

    def _check_source(self, carrier: str, source: str, by: AnsweredMO | None) -> None:
        """A source named by the request must be one of the carrier's short codes (a sender may not
        pose as another service's number), or the short code of the MO it answers that way."""
        configured = self.settings.carrier(carrier)
        if configured is None or source in configured.short_codes:
            return
        if by is not None and by.short_code == source:
            return
        codes = ", ".join(configured.short_codes) or "none"
        raise OutboxError(f"short code {source} is not one of carrier {carrier}'s (its short codes: {codes})")

    def variables(
        self, request: MTRequest, digits: str, recipient: Recipient | None, route: Route, now: datetime
    ) -> dict[str, str]:
        """The manual's variables for this MT: of the MO it answers; without one (a push), ``mensaje``
        empty, ``hora`` / ``fecha`` now, ``host`` and ``operador`` the MT's own short code and carrier.
        Times in the zone of the MO's service (else of the short code's service, else the default)."""
        mo = request.mo
        country = (mo.country if mo is not None else None) or (recipient.country if recipient else None)
        country = country or country_of("+" + digits)
        if mo is None:
            zone = self.settings.zone(None, route.source)
            return message_variables("", route.source, route.carrier, digits, now, zone, country)
        zone = self.settings.zone(mo.service, mo.short_code)
        return message_variables(mo.text, mo.short_code, mo.carrier, digits, mo.received_at, zone, country)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def held_note(until: datetime, zone: ZoneInfo) -> str:
    """The history line of a held push: when it leaves, on the client's clock and in UTC."""
    local = until.astimezone(zone)
    return f"held for quiet hours until {local:%Y-%m-%d %H:%M} {zone.key} ({until.astimezone(UTC):%H:%M} UTC)"


def _premium_refusal(kind: MTKind, state: PremiumState) -> Refusal | None:
    """The recipient rule's refusal of an MT of ``kind`` to a client held in ``state``."""
    return refusal(kind, opted_out=False, banned=False, held=state)


def _new_mt(item: Prepared, charge: int | None = None) -> NewMT:
    request, route = item.request, item.route
    mo = request.mo
    held = item.held_until
    return NewMT(
        kind=request.kind,
        carrier=route.carrier,
        source=route.source,
        destination=item.destination,
        text=item.text,
        priority=request.priority,
        bind_name=route.bind_name,
        subscriber_id=item.recipient.id if item.recipient is not None else None,
        conversation_id=request.conversation_id,
        operator_id=request.operator_id,
        in_reply_to_mo_id=mo.id if mo is not None else None,
        not_before=held,
        note=held_note(held, item.zone) if held is not None and item.zone is not None else None,
        charge=charge,
    )


async def wait_final(sessions: async_sessionmaker[AsyncSession], mt_id: int, *, poll: float = 0.2) -> MTState:
    """Poll the MT (queued by this process: it exists) until it reaches a final status (the caller
    bounds the wait with a timeout): ``gatewayd send --wait``."""
    while True:
        async with sessions() as session:
            state = await mt_state(session, mt_id)
        assert state is not None, f"MT {mt_id} vanished"
        if state.status.is_final:
            return state
        await asyncio.sleep(poll)


__all__ = [
    "MAX_SEGMENTS",
    "AnsweredMO",
    "Batch",
    "InvalidDestination",
    "MTRequest",
    "Outbox",
    "OutboxError",
    "OutboxSettings",
    "Prepared",
    "Queued",
    "Route",
    "TextRefused",
    "check_text",
    "held_note",
    "wait_final",
]
