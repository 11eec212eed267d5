"""Premium-SMS rules as pure decisions: the price notice, express acceptance and spend control.

A billed service (``[[services]]`` with ``[services.billing]``) keeps, per client, an :class:`Account`:
its state, the calendar month (in the service's zone) its spend belongs to, the spend in minor units
(cents, pence), how many of the month's spend steps were crossed, when the client last wrote and
when the price notice last went out. The daemon reads and writes the account; the decisions are
here, with the time passed in:

* :func:`after_mo` — what a client's chat MO does: the price notice on a first MO and after
  ``notice_again_after`` days of silence (asking again for acceptance where the service requires
  it), an acceptance keyword (``SI`` / ``YES``) that lifts the wait for acceptance or a confirm
  step's pause, and, for an MO-billed service, the MO's price with the steps it crosses;
* :func:`charge_mt` — what a billed MT does to the account of an MT-billed service: its price and
  the steps it crosses, or a refusal when it would take the month's spend past the cap;
* :func:`hold` — the state that stops billed MTs now (the recipient rule reads it).

States: ``awaiting`` (the notice went out, acceptance required, no ``SI`` yet), ``paused`` (a
``confirm`` step was crossed and the client did not confirm yet), ``capped`` (the cap was reached:
until the month ends), ``normal``. A new month clears the spend, the steps, a pause and a cap; it
never clears a wait for acceptance.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from routing.keywords import normalise_keyword


class PremiumState(StrEnum):
    NORMAL = "normal"
    AWAITING = "awaiting"  # the price notice went out; the client has not accepted yet
    PAUSED = "paused"  # a confirm step was crossed; the client has not confirmed yet
    CAPPED = "capped"  # the month's cap was reached


class StepAction(StrEnum):
    NOTIFY = "notify"  # a reminder, nothing stops
    CONFIRM = "confirm"  # a reminder, and billed MTs stop until the client answers positively
    CAP = "cap"  # the cap notice, and billed MTs stop until the month ends


class Billed(StrEnum):
    MO = "mo"
    MT = "mt"


@dataclass(frozen=True, slots=True)
class SpendStep:
    """At ``at`` minor units spent in a month, ``action``; ``text`` its notice (None: the default)."""

    at: int
    action: StepAction
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Terms:
    """A billed service's terms: prices in minor units, what is billed, the notice, the steps."""

    price_mo: int
    price_mt: int
    currency: str
    provider: str
    billed: Billed
    notice: str
    acceptance: bool
    zone: tzinfo
    #: Days of silence after which the notice goes out again (None: only before the first MO).
    notice_again_after: timedelta | None = None
    #: In increasing ``at`` order; at most one ``cap``, the last.
    steps: tuple[SpendStep, ...] = ()

    @property
    def cap(self) -> int | None:
        """The month's cap in minor units (None: no cap)."""
        return next((step.at for step in self.steps if step.action is StepAction.CAP), None)


@dataclass(frozen=True, slots=True)
class Account:
    """A client's standing on one billed service. ``month`` is ``YYYY-MM`` in the service's zone
    (empty: never set); ``held_until`` ends a pause or a cap (the month's end)."""

    state: PremiumState = PremiumState.NORMAL
    month: str = ""
    #: The first instant of ``month`` (a charge made before it belongs to a month closed).
    month_start: datetime | None = None
    spent: int = 0
    steps_passed: int = 0
    last_mo_at: datetime | None = None
    noticed_at: datetime | None = None
    held_until: datetime | None = None
    #: When the current hold (awaiting, paused, capped) began: MTs queued up to then were allowed
    #: under the limits in force and still go; later ones are held.
    held_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an MO or a billed MT does: the account after it, the notice to send, the steps crossed
    (each sends its notice), and whether the client's answer lifted a wait (``accepted``)."""

    account: Account
    notice: bool = False
    accepted: bool = False
    crossed: tuple[SpendStep, ...] = ()
    #: For an MT: False when it may not go (it would pass the cap).
    allowed: bool = True


def month_of(at: datetime, zone: tzinfo) -> str:
    """``YYYY-MM`` of ``at`` in ``zone``."""
    return at.astimezone(zone).strftime("%Y-%m")


def month_start(at: datetime, zone: tzinfo) -> datetime:
    """The first instant (UTC) of the month ``at`` falls in, in ``zone``."""
    local = at.astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).astimezone(UTC)


def month_end(at: datetime, zone: tzinfo) -> datetime:
    """The first instant (UTC) of the month after the one ``at`` falls in, in ``zone``."""
    local = at.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def in_month(account: Account, terms: Terms, now: datetime) -> Account:
    """The account in ``now``'s month: a new month starts from nothing spent, no step crossed, and
    lifts a pause or a cap (a wait for acceptance stays)."""
    month = month_of(now, terms.zone)
    if account.month == month:
        return account
    state = PremiumState.AWAITING if account.state is PremiumState.AWAITING else PremiumState.NORMAL
    return replace(
        account,
        state=state,
        month=month,
        month_start=month_start(now, terms.zone),
        spent=0,
        steps_passed=0,
        held_until=None,
    )


def hold(state: PremiumState, held_until: datetime | None, now: datetime) -> PremiumState | None:
    """The state that stops billed MTs at ``now`` (None: they may go)."""
    if state is PremiumState.NORMAL or (held_until is not None and now >= held_until):
        return None
    return state


def hold_of_queued(
    state: PremiumState,
    held_until: datetime | None,
    held_since: datetime | None,
    queued_at: datetime,
    now: datetime,
) -> PremiumState | None:
    """:func:`hold` for an MT queued at ``queued_at`` and about to be sent: one queued up to the
    moment the hold began was allowed (and charged) under the limits in force then, and goes (the MT
    that crossed a confirm step or reached the cap among them); one queued later is held."""
    if held_since is not None and queued_at <= held_since:
        return None
    return hold(state, held_until, now)


def _since(before: Account, after: Account, now: datetime) -> Account:
    """``after`` with ``held_since`` set when a hold began (or changed kind) just now."""
    if after.state is not PremiumState.NORMAL and after.state is not before.state:
        return replace(after, held_since=now)
    if after.state is PremiumState.NORMAL and after.held_since is not None:
        return replace(after, held_since=None)
    return after


def standing(account: Account | None, terms: Terms, now: datetime) -> tuple[int, PremiumState]:
    """What the desk shows of a client's account now: the month's spend and the state that holds
    their billed MTs (``normal`` when none does; awaiting for a client never sent the price
    notice: no billed MT goes before it)."""
    if account is None:
        account = Account()
    current = in_month(account, terms, now)
    if current.noticed_at is None:
        return current.spent, PremiumState.AWAITING
    return current.spent, hold(current.state, current.held_until, now) or PremiumState.NORMAL


def is_acceptance(text: str, accept: Iterable[str]) -> bool:
    """Is the MO an acceptance keyword and nothing else (``si``, ``Sí.``, `` ¡YES! ``; case, accents,
    spacing and surrounding punctuation ignored)? An express acceptance must be unambiguous: an MO
    that only starts with one (``Si quieres hablamos``: Spanish *if*) accepts nothing. ``accept``
    holds normalised keywords."""
    words = " ".join(text.split())
    return bool(words) and normalise_keyword(words) in set(accept)


def after_mo(account: Account, terms: Terms, *, accepts: bool, now: datetime) -> Outcome:
    """What a chat MO to the service does to the client's ``account`` (``accepts``: it is an
    acceptance keyword alone, :func:`is_acceptance`). The notice goes out before anything else on a
    first MO (never noticed) and after ``notice_again_after`` of silence, and asks for acceptance
    again where the service requires it (the MO that gets the notice accepts nothing: the client
    has not read it yet); otherwise an acceptance keyword lifts a wait for acceptance or a confirm
    step's pause. An MO-billed service then charges the MO."""
    current = in_month(account, terms, now)
    silent = (
        terms.notice_again_after is not None
        and current.last_mo_at is not None
        and now - current.last_mo_at >= terms.notice_again_after
    )
    notice = current.noticed_at is None or silent
    accepted = False
    if notice:
        state = current.state
        if terms.acceptance and state is not PremiumState.CAPPED:  # a cap outranks the wait
            state = PremiumState.AWAITING
        current = replace(current, state=state, noticed_at=now)
    elif current.state is PremiumState.AWAITING and not terms.acceptance:  # no longer required
        current = replace(current, state=PremiumState.NORMAL)
    elif accepts and current.state in (PremiumState.AWAITING, PremiumState.PAUSED):
        current = replace(current, state=PremiumState.NORMAL, held_until=None)
        accepted = True
    current = replace(current, last_mo_at=now)
    crossed: tuple[SpendStep, ...] = ()
    if terms.billed is Billed.MO:
        current, crossed = _spend(current, terms, terms.price_mo, now)
    return Outcome(_since(account, current, now), notice=notice, accepted=accepted, crossed=crossed)


def count_mo(account: Account, terms: Terms, now: datetime) -> Outcome:
    """A chat MO from a client the gateway does not write to (opted out, banned): no notice and no
    acceptance read, but an MO-billed service counts its price (the carrier charged it whatever the
    gateway does) with the steps it crosses and the holds they bring, so a client who comes back
    (ALTA) does not find the month's spend understated."""
    current = in_month(account, terms, now)
    crossed: tuple[SpendStep, ...] = ()
    if terms.billed is Billed.MO:
        current, crossed = _spend(current, terms, terms.price_mo, now)
    return Outcome(_since(account, current, now), crossed=crossed)


def charge_mt(account: Account, terms: Terms, now: datetime, parts: int = 1) -> Outcome:
    """A billed MT (an operator's or a mass push's) to the client of a billed service. Refused
    (``allowed`` False, the account in the state that refuses it) to a client who never got the
    price notice where the service requires acceptance (awaiting), and, on an MT-billed service, when
    it would take the month's spend past the cap (capped; the cap's notice among ``crossed`` if it
    has not gone out yet); else an MT-billed service adds its price per part (``parts``: the SMS
    segments of a long MT, each a message the carrier may bill) and the steps it crosses. The caller
    has applied the recipient rule; a hold begun earlier in the same batch refuses the MT. A client
    never sent the price notice gets no billed MT, whether or not the service asks for acceptance: the
    price goes out before the first charge."""
    current = in_month(account, terms, now)
    if current.noticed_at is None:
        return Outcome(_since(account, replace(current, state=PremiumState.AWAITING), now), allowed=False)
    held = hold(current.state, current.held_until, now)
    if held is not None:  # an MT of the same batch after one that paused or capped the account
        return Outcome(current, allowed=False)
    if terms.billed is not Billed.MT:
        return Outcome(current)
    price = terms.price_mt * parts
    cap = terms.cap
    if cap is not None and current.spent + price > cap:
        through_cap = [index for index, step in enumerate(terms.steps) if step.action is StepAction.CAP][
            0
        ] + 1
        crossed = terms.steps[current.steps_passed : through_cap]
        capped = replace(
            current,
            state=PremiumState.CAPPED,
            steps_passed=max(current.steps_passed, through_cap),
            held_until=month_end(now, terms.zone),
        )
        return Outcome(_since(account, capped, now), crossed=tuple(crossed), allowed=False)
    current, crossed = _spend(current, terms, price, now)
    return Outcome(_since(account, current, now), crossed=crossed)


def _spend(
    account: Account, terms: Terms, price: int, now: datetime
) -> tuple[Account, tuple[SpendStep, ...]]:
    """``price`` added to the month's spend, with the steps it crosses and the state they bring: a
    cap caps, a confirm pauses (a wait for acceptance or a cap outranks a pause)."""
    spent = account.spent + price
    crossed = tuple(step for step in terms.steps[account.steps_passed :] if step.at <= spent)
    state, held_until = account.state, account.held_until
    actions = {step.action for step in crossed}
    if StepAction.CAP in actions:
        state, held_until = PremiumState.CAPPED, month_end(now, terms.zone)
    elif StepAction.CONFIRM in actions and state is PremiumState.NORMAL:
        state, held_until = PremiumState.PAUSED, month_end(now, terms.zone)
    account = replace(
        account,
        spent=spent,
        steps_passed=account.steps_passed + len(crossed),
        state=state,
        held_until=held_until,
    )
    return account, crossed


def given_back(charge: int, maybe_delivered: int) -> int:
    """What a billed MT that ended undelivered (failed, expired, refused, cancelled) gives back of
    its ``charge``: all of it when none of its segments may have reached the phone, else nothing (a
    segment delivered, or still awaiting its receipt, may be billed by the carrier; the spend is then
    overstated rather than understated, so the cap is never passed late)."""
    return charge if maybe_delivered <= 0 else 0


def format_money(minor: int) -> str:
    """Minor units as an amount with two decimals: 120 -> '1.20'."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def price_variables(terms: Terms, spent: int) -> dict[str, str]:
    """The variables a premium notice may use besides the manual's: the billed price, the currency,
    the provider and the month's spend, in Spanish and English names."""
    price = format_money(terms.price_mo if terms.billed is Billed.MO else terms.price_mt)
    values = {
        "precio": price,
        "price": price,
        "moneda": terms.currency,
        "currency": terms.currency,
        "proveedor": terms.provider,
        "provider": terms.provider,
        "gasto": format_money(spent),
        "spent": format_money(spent),
    }
    return values


def check_steps(steps: Sequence[SpendStep]) -> list[tuple[int, str, str]]:
    """Problems of a list of steps as (index, field, message): amounts must be positive and
    increasing, and a ``cap`` must be the last step."""
    problems: list[tuple[int, str, str]] = []
    previous: int | None = None
    for index, step in enumerate(steps):
        if step.at <= 0:
            problems.append((index, "at", f"must be above 0, not {format_money(step.at)}"))
        if previous is not None and step.at <= previous:
            problems.append(
                (
                    index,
                    "at",
                    f"must be above the step before ({format_money(previous)}), not {format_money(step.at)}",
                )
            )
        if step.action is StepAction.CAP and index != len(steps) - 1:
            problems.append((index, "action", "a cap must be the last step (nothing is billed after it)"))
        previous = step.at
    return problems


def normalised_keywords(words: Iterable[str]) -> frozenset[str]:
    """Acceptance keywords as :func:`is_acceptance` compares them ('Sí' -> 'SI')."""
    return frozenset(
        normalise_keyword(unicodedata.normalize("NFC", word)) for word in words if normalise_keyword(word)
    )


#: Acceptance keywords of a country whose ``[keywords]`` table names none.
DEFAULT_ACCEPT = normalised_keywords(("SI", "YES"))
