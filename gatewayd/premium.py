"""Premium-SMS terms in the daemon: the price notice, express acceptance and spend control (issue 14;
docs/COMPLIANCE.md).

The decisions are ``routing.premium``'s pure functions, the rows ``gatewayd.store.premium``'s; this
module puts them together for the two callers, both inside the caller's transaction:

* the MO pipeline (:meth:`Premium.after_mos`, once per group commit, only when the batch holds chat
  MOs to a billed service: a service without billing costs no statement): the price notice on a
  client's first MO and after days of silence, the client's acceptance (``SI`` / ``YES``), an
  MO-billed service's spend and its steps;
* the outbox (:meth:`Premium.charge`, only for billed MTs from a billed short code): an MT-billed
  service's spend, counted when the MT is queued (so MTs in flight can never pass the cap) and given
  back when it ends failed, expired or refused; an MT that would pass the cap is refused by the
  recipient rule with the account capped.

Each returns the notices to queue as ``SYSTEM`` MTs through the outbox in the same transaction, and
:meth:`Premium.audit` records each automatic change (the notice's MT id with it) in that transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncSession

from gatewayd.config import Config
from gatewayd.replies import step_template
from gatewayd.store.audit import AuditEntry, append_audit
from gatewayd.store.premium import Key, lock_accounts, save_accounts
from routing.premium import (
    DEFAULT_ACCEPT,
    Account,
    Billed,
    PremiumState,
    SpendStep,
    Terms,
    after_mo,
    charge_mt,
    count_mo,
    format_money,
    is_acceptance,
    normalised_keywords,
    price_variables,
)

#: The audit trail's actor of what the gateway did by itself under a service's premium terms.
PREMIUM_ACTOR = "gatewayd"


@dataclass(frozen=True, slots=True)
class PremiumSettings:
    """What the premium rules read of the configuration: each billed service's terms, the billed
    short codes (one billed service each), the services' countries and the acceptance keywords."""

    terms: Mapping[str, Terms] = field(default_factory=dict)
    #: billed short code -> its service
    services_by_code: Mapping[str, str] = field(default_factory=dict)
    #: service -> the country of its short code's carrier (the language of the default texts)
    countries: Mapping[str, str] = field(default_factory=dict)
    #: country -> normalised acceptance keywords
    accept: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> PremiumSettings:
        terms: dict[str, Terms] = {}
        codes: dict[str, str] = {}
        countries: dict[str, str] = {}
        for service in config.services:
            billing = service.billing
            if billing is None:
                continue
            country = next(
                (carrier.country for carrier in config.carriers if service.short_code in carrier.short_codes),
                "",
            )
            steps = billing.steps
            if steps is None:
                spend = config.spend.get(country)
                steps = spend.steps if spend is not None else ()
            terms[service.name] = Terms(
                price_mo=billing.price_mo,
                price_mt=billing.price_mt,
                currency=billing.currency,
                provider=billing.provider,
                billed=billing.billed,
                notice=billing.notice,
                acceptance=billing.acceptance,
                zone=service.zone,
                notice_again_after=(
                    timedelta(days=billing.notice_again_after_days)
                    if billing.notice_again_after_days is not None
                    else None
                ),
                steps=tuple(step.step for step in steps),
            )
            codes[service.short_code] = service.name
            countries[service.name] = country
        accept = {
            country: normalised_keywords(keywords.accept)
            for country, keywords in config.keywords.items()
            if keywords.accept
        }
        return cls(
            MappingProxyType(terms),
            MappingProxyType(codes),
            MappingProxyType(countries),
            MappingProxyType(accept),
        )

    @property
    def billed_short_codes(self) -> frozenset[str]:
        return frozenset(self.services_by_code)

    def accepts(self, country: str | None) -> frozenset[str]:
        """The acceptance keywords of a country (``[keywords.<country>] accept``, else SI / YES)."""
        return self.accept.get((country or "").upper(), DEFAULT_ACCEPT)


@dataclass(frozen=True, slots=True)
class ChatMO:
    """A stored chat MO to a billed service, as the rules need it (``index``: its place in the batch)."""

    index: int
    subscriber_id: int
    client_id: str
    service: str
    short_code: str
    text: str
    country: str | None
    carrier: str
    #: The gateway does not write to this client (opted out when the MO came, or banned): the MO is
    #: only counted (:func:`routing.premium.count_mo`), its steps audited without a notice.
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """An automatic MT the rules send (``kind``: ``notice`` or a step's action) with the audit record
    it gets once queued; ``index``: the MO (of the batch) or the MT (of the outbox's items) behind it."""

    index: int
    subscriber_id: int
    service: str
    text: str
    variables: Mapping[str, str]
    kind: str
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class Billable:
    """A billed MT the outbox is about to queue from a billed short code."""

    index: int
    subscriber_id: int
    client_id: str
    short_code: str
    #: The SMS segments of the MT: an MT-billed service charges each (the carrier may bill each).
    parts: int = 1


@dataclass(slots=True)
class Charges:
    """What :meth:`Premium.charge` decided, per outbox item: its charge (minor units), or the state
    that refuses it (the recipient rule gives the reason); and the step notices to queue."""

    charged: dict[int, int] = field(default_factory=dict)
    refused: dict[int, PremiumState] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)


class Premium:
    """The premium rules for the MO pipeline and the outbox (``settings`` swapped on reload)."""

    def __init__(self, settings: PremiumSettings | None = None) -> None:
        self.settings = settings or PremiumSettings()

    async def after_mos(self, session: AsyncSession, mos: Sequence[ChatMO], now: datetime) -> list[Notice]:
        """Applies a batch's chat MOs to billed services (in order) to their clients' accounts; the
        notices to queue (price notices, spend steps). An acceptance is audited here (it sends
        nothing), and so is a step crossed by a quiet MO (:attr:`ChatMO.quiet`: no notice)."""
        settings = self.settings
        wanted = {(mo.subscriber_id, mo.service): mo.short_code for mo in mos}
        accounts = await lock_accounts(session, wanted, now, create=True)
        changed: dict[Key, Account] = {}
        notices: list[Notice] = []
        for mo in mos:
            key = (mo.subscriber_id, mo.service)
            terms = settings.terms[mo.service]
            before = changed.get(key) or accounts.get(key) or Account()
            if mo.quiet:
                quiet = count_mo(before, terms, now)
                changed[key] = quiet.account
                for step in self._steps(
                    mo.index,
                    mo.subscriber_id,
                    mo.client_id,
                    mo.service,
                    quiet.crossed,
                    quiet.account,
                    mo.carrier,
                ):
                    await append_audit(
                        session,
                        replace(step.entry, details={**step.entry.details, "mt_id": None, "quiet": True}),
                        now=now,
                    )
                continue
            accepts = is_acceptance(mo.text, settings.accepts(mo.country))
            outcome = after_mo(before, terms, accepts=accepts, now=now)
            changed[key] = outcome.account
            subject = f"client:{mo.client_id}"
            common = {"service": mo.service, "short_code": mo.short_code}
            if outcome.notice:
                notices.append(
                    Notice(
                        mo.index,
                        mo.subscriber_id,
                        mo.service,
                        terms.notice,
                        price_variables(terms, outcome.account.spent),
                        "notice",
                        AuditEntry(
                            action="premium.notice",
                            actor=PREMIUM_ACTOR,
                            source=mo.carrier,
                            subject=subject,
                            details={
                                **common,
                                "acceptance": terms.acceptance,
                                "state": outcome.account.state.value,
                                "first": before.noticed_at is None,
                            },
                        ),
                    )
                )
            if outcome.accepted:
                await append_audit(
                    session,
                    AuditEntry(
                        action="premium.accept",
                        actor="sms",
                        source=mo.carrier,
                        subject=subject,
                        details={
                            **common,
                            "before": {"state": before.state.value},
                            "after": {"state": "normal"},
                        },
                    ),
                    now=now,
                )
            notices += self._steps(
                mo.index,
                mo.subscriber_id,
                mo.client_id,
                mo.service,
                outcome.crossed,
                outcome.account,
                mo.carrier,
            )
        await save_accounts(session, changed, now)
        return notices

    async def charge(self, session: AsyncSession, items: Sequence[Billable], now: datetime) -> Charges:
        """Applies billed MTs (in order) to their clients' accounts (:func:`routing.premium.charge_mt`):
        each MT's charge on an MT-billed service (per part), or the state that refuses it (awaiting: the
        client never got the price notice; capped: it would pass the cap),
        and the step notices. A client with no account yet gets one."""
        settings = self.settings
        charges = Charges()
        if not items:
            return charges
        wanted = {
            (item.subscriber_id, settings.services_by_code[item.short_code]): item.short_code
            for item in items
        }
        accounts = await lock_accounts(session, wanted, now, create=True, clients_first=True)
        changed: dict[Key, Account] = {}
        for item in items:
            service = settings.services_by_code[item.short_code]
            key = (item.subscriber_id, service)
            terms = settings.terms[service]
            before = changed.get(key) or accounts.get(key) or Account()
            outcome = charge_mt(before, terms, now, item.parts)
            changed[key] = outcome.account
            if not outcome.allowed:
                charges.refused[item.index] = outcome.account.state
            elif terms.billed is Billed.MT:
                charges.charged[item.index] = terms.price_mt * item.parts
            charges.notices += self._steps(
                item.index,
                item.subscriber_id,
                item.client_id,
                service,
                outcome.crossed,
                outcome.account,
                None,
            )
        await save_accounts(session, changed, now)
        return charges

    def _steps(
        self,
        index: int,
        subscriber_id: int,
        client_id: str,
        service: str,
        crossed: Sequence[SpendStep],
        account: Account,
        source: str | None,
    ) -> list[Notice]:
        terms = self.settings.terms[service]
        country = self.settings.countries.get(service, "")
        return [
            Notice(
                index,
                subscriber_id,
                service,
                step.text or step_template(step.action, country),
                price_variables(terms, account.spent),
                step.action.value,
                AuditEntry(
                    action=f"premium.{step.action.value}",
                    actor=PREMIUM_ACTOR,
                    source=source,
                    subject=f"client:{client_id}",
                    details={
                        "service": service,
                        "at": format_money(step.at),
                        "spent": format_money(account.spent),
                        "currency": terms.currency,
                        "state": account.state.value,
                    },
                ),
            )
            for step in crossed
        ]

    @staticmethod
    async def audit(
        session: AsyncSession, notices: Sequence[tuple[Notice, int | None]], now: datetime
    ) -> None:
        """Records each notice with the MT that carries it (None: the outbox refused it)."""
        for notice, mt_id in notices:
            entry = notice.entry
            await append_audit(session, replace(entry, details={**entry.details, "mt_id": mt_id}), now=now)


__all__ = ["PREMIUM_ACTOR", "Billable", "Charges", "ChatMO", "Notice", "Premium", "PremiumSettings"]
