"""The premium-SMS rules as pure decisions: notice, acceptance, spend steps, cap, months, holds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from routing.premium import (
    DEFAULT_ACCEPT,
    Account,
    Billed,
    PremiumState,
    SpendStep,
    StepAction,
    Terms,
    after_mo,
    charge_mt,
    check_steps,
    count_mo,
    format_money,
    given_back,
    hold,
    hold_of_queued,
    in_month,
    is_acceptance,
    month_end,
    month_start,
    normalised_keywords,
    price_variables,
)

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
#: The UK example: confirm at 10, notify at 15, confirm at 30, cap at 40 (prices 1.50 per MT).
UK = Terms(
    price_mo=0,
    price_mt=150,
    currency="GBP",
    provider="Acme",
    billed=Billed.MT,
    notice="{price} {currency}",
    acceptance=True,
    zone=LONDON,
    notice_again_after=timedelta(days=30),
    steps=(
        SpendStep(1000, StepAction.CONFIRM),
        SpendStep(1500, StepAction.NOTIFY),
        SpendStep(3000, StepAction.CONFIRM),
        SpendStep(4000, StepAction.CAP),
    ),
)


def accepted(now: datetime = NOW) -> Account:
    first = after_mo(Account(), UK, accepts=False, now=now).account
    return after_mo(first, UK, accepts=True, now=now).account


def test_a_first_mo_gets_the_notice_and_waits_for_acceptance() -> None:
    outcome = after_mo(Account(), UK, accepts=False, now=NOW)
    assert outcome.notice and not outcome.accepted
    assert outcome.account.state is PremiumState.AWAITING
    assert outcome.account.noticed_at == NOW and outcome.account.held_since == NOW
    assert outcome.account.month == "2026-12" and outcome.account.month_start == datetime(
        2026, 12, 1, tzinfo=UTC
    )


def test_the_mo_that_gets_the_notice_accepts_nothing() -> None:
    """'SI' as a first MO: the client has not read the price yet."""
    outcome = after_mo(Account(), UK, accepts=True, now=NOW)
    assert outcome.notice and outcome.account.state is PremiumState.AWAITING


def test_acceptance_lifts_the_wait_and_chat_does_not() -> None:
    first = after_mo(Account(), UK, accepts=False, now=NOW).account
    chat = after_mo(first, UK, accepts=False, now=NOW + timedelta(minutes=1))
    assert not chat.notice and chat.account.state is PremiumState.AWAITING
    yes = after_mo(chat.account, UK, accepts=True, now=NOW + timedelta(minutes=2))
    assert yes.accepted and yes.account.state is PremiumState.NORMAL and yes.account.held_since is None


def test_without_acceptance_the_notice_holds_nothing() -> None:
    terms = replace(UK, acceptance=False)
    outcome = after_mo(Account(), terms, accepts=False, now=NOW)
    assert outcome.notice and outcome.account.state is PremiumState.NORMAL
    assert charge_mt(outcome.account, terms, NOW).allowed


def test_the_notice_goes_again_after_days_of_silence() -> None:
    account = accepted()
    soon = after_mo(account, UK, accepts=False, now=NOW + timedelta(days=29))
    assert not soon.notice and soon.account.state is PremiumState.NORMAL
    late = after_mo(soon.account, UK, accepts=False, now=NOW + timedelta(days=59))
    assert late.notice and late.account.state is PremiumState.AWAITING


def test_mt_charges_cross_the_steps_in_order() -> None:
    account = accepted()
    crossed: list[tuple[int, StepAction]] = []
    for _ in range(6):  # 9.00
        outcome = charge_mt(account, UK, NOW)
        assert outcome.allowed and not outcome.crossed
        account = outcome.account
    outcome = charge_mt(account, UK, NOW)  # 10.50: the confirm at 10 is crossed
    assert outcome.allowed and [step.action for step in outcome.crossed] == [StepAction.CONFIRM]
    assert outcome.account.state is PremiumState.PAUSED and outcome.account.spent == 1050
    assert (
        outcome.account.held_until == datetime(2027, 1, 1, tzinfo=UTC) and outcome.account.held_since == NOW
    )
    # the next MT in the same batch is refused: the pause holds
    assert not charge_mt(outcome.account, UK, NOW).allowed
    account = after_mo(outcome.account, UK, accepts=True, now=NOW).account
    assert account.state is PremiumState.NORMAL
    while account.spent < 3000:
        outcome = charge_mt(account, UK, NOW)
        crossed += [(step.at, step.action) for step in outcome.crossed]
        account = outcome.account
    assert crossed == [(1500, StepAction.NOTIFY), (3000, StepAction.CONFIRM)]
    assert account.state is PremiumState.PAUSED and account.steps_passed == 3


def test_an_mt_that_would_pass_the_cap_is_refused_and_caps() -> None:
    account = replace(accepted(), spent=3900, steps_passed=3)
    outcome = charge_mt(account, UK, NOW)  # 39.00 + 1.50 > 40.00
    assert not outcome.allowed
    assert outcome.account.state is PremiumState.CAPPED and outcome.account.spent == 3900
    assert [step.action for step in outcome.crossed] == [StepAction.CAP]
    assert hold(outcome.account.state, outcome.account.held_until, NOW) is PremiumState.CAPPED


def test_reaching_the_cap_exactly_is_allowed_and_caps() -> None:
    terms = replace(UK, price_mt=100)
    outcome = charge_mt(replace(accepted(), spent=3900, steps_passed=3), terms, NOW)
    assert outcome.allowed and outcome.account.spent == 4000
    assert outcome.account.state is PremiumState.CAPPED
    assert [step.action for step in outcome.crossed] == [StepAction.CAP]


def test_a_client_never_noticed_gets_no_billed_mt_where_acceptance_is_required() -> None:
    outcome = charge_mt(Account(), UK, NOW)
    assert not outcome.allowed and outcome.account.state is PremiumState.AWAITING


def test_no_billed_mt_before_the_price_notice_even_without_acceptance() -> None:
    """The price goes out before the first charge: a push to a client who never wrote is refused
    whether or not the service asks for an express yes."""
    terms = replace(UK, acceptance=False)
    outcome = charge_mt(Account(), terms, NOW)
    assert not outcome.allowed and outcome.account.spent == 0
    noticed = after_mo(Account(), terms, accepts=False, now=NOW).account
    assert charge_mt(noticed, terms, NOW).allowed


def test_a_long_mt_is_charged_per_part_and_cannot_slip_past_the_cap() -> None:
    three = charge_mt(replace(accepted(), spent=3000, steps_passed=3), UK, NOW, parts=3)
    assert three.allowed and three.account.spent == 3450
    # 3450 + 3 x 150 = 3900 is within the cap; 3900 + 2 x 150 would pass it: refused, capped
    four = charge_mt(replace(three.account, spent=3900), UK, NOW, parts=2)
    assert not four.allowed and four.account.spent == 3900
    assert four.account.state is PremiumState.CAPPED


def test_the_month_turns_at_midnight_local_across_dst() -> None:
    """The 1st at 00:30 in London in summer is still the 31st at 23:30 UTC: a new month there."""
    capped = replace(accepted(), spent=4000, steps_passed=4, state=PremiumState.CAPPED, month="2026-07")
    first_of_august = datetime(2026, 7, 31, 23, 30, tzinfo=UTC)  # 00:30 BST on 1 August
    assert month_start(first_of_august, LONDON) == datetime(2026, 7, 31, 23, 0, tzinfo=UTC)
    outcome = charge_mt(capped, UK, first_of_august)
    assert outcome.allowed and outcome.account.month == "2026-08" and outcome.account.spent == 150


def test_a_quiet_mo_is_counted_on_an_mo_billed_service_without_notice_or_acceptance() -> None:
    terms = replace(UK, billed=Billed.MO, price_mo=500, price_mt=0)
    first = count_mo(Account(), terms, NOW)
    assert first.account.spent == 500 and first.account.noticed_at is None and not first.notice
    second = count_mo(first.account, terms, NOW)
    assert [step.action for step in second.crossed] == [StepAction.CONFIRM]
    assert second.account.state is PremiumState.PAUSED
    # an MT-billed service counts nothing for an MO
    assert count_mo(Account(), UK, NOW).account.spent == 0


def test_a_new_month_clears_spend_pause_and_cap_but_not_the_wait() -> None:
    capped = replace(accepted(), spent=4000, steps_passed=4, state=PremiumState.CAPPED)
    capped = replace(capped, held_until=month_end(NOW, LONDON))
    january = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    assert hold(capped.state, capped.held_until, january) is None
    fresh = in_month(capped, UK, january)
    assert (fresh.state, fresh.spent, fresh.steps_passed, fresh.month) == (
        PremiumState.NORMAL,
        0,
        0,
        "2027-01",
    )
    waiting = in_month(replace(capped, state=PremiumState.AWAITING), UK, january)
    assert waiting.state is PremiumState.AWAITING


def test_months_are_read_in_the_services_zone() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    new_year_in_madrid = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 January in Madrid
    assert month_start(new_year_in_madrid, madrid) == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert month_end(NOW, madrid) == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


def test_mo_billed_services_charge_every_chat_mo() -> None:
    terms = replace(UK, billed=Billed.MO, price_mo=500, price_mt=0, acceptance=False)
    first = after_mo(Account(), terms, accepts=False, now=NOW)
    assert first.account.spent == 500 and first.notice
    second = after_mo(first.account, terms, accepts=False, now=NOW)
    assert second.account.spent == 1000 and [step.action for step in second.crossed] == [StepAction.CONFIRM]
    assert second.account.state is PremiumState.PAUSED
    # an MO-billed service adds nothing for an MT, but its pause holds billed MTs
    assert hold(second.account.state, second.account.held_until, NOW) is PremiumState.PAUSED


def test_an_mt_queued_before_the_hold_began_still_goes() -> None:
    since = NOW
    assert hold_of_queued(PremiumState.PAUSED, None, since, NOW, NOW + timedelta(seconds=1)) is None
    later = NOW + timedelta(seconds=1)
    assert hold_of_queued(PremiumState.PAUSED, None, since, later, later) is PremiumState.PAUSED


@pytest.mark.parametrize("text", ["SI", "si", "Sí.", " ¡SÍ! ", "yes", "YES!!", "\tsí\n"])
def test_acceptance_is_the_keyword_alone(text: str) -> None:
    assert is_acceptance(text, DEFAULT_ACCEPT)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sino",
        "no",
        "vale si",
        "Si quieres hablamos",
        "si no me contestas me voy",
        " ¡SÍ! gracias",
        "yes please",
    ],
)
def test_other_texts_do_not_accept(text: str) -> None:
    """Spanish "si" (if) opens many a chat MO: only an unambiguous yes accepts a charge."""
    assert not is_acceptance(text, DEFAULT_ACCEPT)


def test_a_keyword_of_several_words_is_matched_whole() -> None:
    accept = normalised_keywords(["SI ACEPTO"])
    assert is_acceptance("sí,  acepto.", accept) is False  # the comma is inside: not the keyword
    assert is_acceptance("Sí   acepto!", accept)


def test_keywords_are_normalised() -> None:
    assert normalised_keywords(["Sí", "oui"]) == frozenset({"SI", "OUI"})


def test_steps_must_increase_and_end_with_the_cap() -> None:
    assert check_steps(UK.steps) == []
    problems = check_steps(
        [SpendStep(1000, StepAction.CAP), SpendStep(1000, StepAction.NOTIFY), SpendStep(0, StepAction.NOTIFY)]
    )
    assert (0, "action", "a cap must be the last step (nothing is billed after it)") in problems
    assert (1, "at", "must be above the step before (10.00), not 10.00") in problems
    assert (2, "at", "must be above 0, not 0.00") in problems


def test_price_variables_in_both_languages() -> None:
    assert price_variables(UK, 1050) == {
        "precio": "1.50",
        "price": "1.50",
        "moneda": "GBP",
        "currency": "GBP",
        "proveedor": "Acme",
        "provider": "Acme",
        "gasto": "10.50",
        "spent": "10.50",
    }
    assert format_money(5) == "0.05" and format_money(-120) == "-1.20"


def test_what_an_undelivered_mt_gives_back() -> None:
    assert given_back(300, 0) == 300  # no segment may have reached the phone: all of it
    assert given_back(300, 1) == 0  # one delivered or awaiting its receipt: the carrier may bill it
