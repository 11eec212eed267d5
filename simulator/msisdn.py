"""Mobile numbers (MSISDNs) of the countries the simulated carriers live in: validation and generation.

Numbers are kept in international form without ``+`` (``34612345678``), the way Spanish SMSCs put them
in ``source_addr`` with TON international / NPI ISDN.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """The mobile numbering plan of one country."""

    country: str
    calling_code: str
    national_length: int
    mobile_prefixes: tuple[str, ...]

    def describe(self) -> str:
        prefixes = " or ".join(self.mobile_prefixes)
        return f"{self.calling_code} followed by {self.national_length} digits starting with {prefixes}"


PLANS: dict[str, NumberPlan] = {
    plan.country: plan
    for plan in (
        NumberPlan("ES", "34", 9, ("6", "7")),
        NumberPlan("PT", "351", 9, ("91", "92", "93", "96")),
        NumberPlan("FR", "33", 9, ("6", "7")),
        NumberPlan("IT", "39", 10, ("3",)),
        NumberPlan("GB", "44", 10, ("7",)),
        NumberPlan("DE", "49", 11, ("15", "16", "17")),
        NumberPlan("MX", "52", 10, ("1", "2", "3", "4", "5", "6", "7", "8", "9")),
        NumberPlan("AR", "54", 11, ("9",)),
        NumberPlan("CO", "57", 10, ("3",)),
        NumberPlan("US", "1", 10, ("2", "3", "4", "5", "6", "7", "8", "9")),
    )
}


class InvalidMSISDN(ValueError):
    """A number that is not a mobile number of the expected country."""


def plan_for(country: str) -> NumberPlan:
    try:
        return PLANS[country.upper()]
    except KeyError:
        known = ", ".join(sorted(PLANS))
        raise ValueError(f"unknown country {country!r}; known countries: {known}") from None


def normalize_msisdn(number: str, country: str) -> str:
    """``number`` as ``<calling code><national number>``, or :class:`InvalidMSISDN` saying what is wrong.

    Accepts ``+34612345678``, ``0034612345678``, ``34612345678`` and the national ``612345678``.
    """
    plan = plan_for(country)
    digits = number.strip().replace(" ", "").replace("-", "")
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not digits.isdigit() or not digits.isascii():
        raise InvalidMSISDN(f"invalid MSISDN {number!r}: only digits and an optional leading '+' are allowed")
    if len(digits) == plan.national_length:
        digits = plan.calling_code + digits
    national = digits[len(plan.calling_code) :]
    if (
        not digits.startswith(plan.calling_code)
        or len(national) != plan.national_length
        or not national.startswith(plan.mobile_prefixes)
    ):
        raise InvalidMSISDN(
            f"invalid MSISDN {number!r} for country {plan.country}: expected {plan.describe()}"
        )
    return digits


def random_msisdns(country: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct mobile numbers of ``country``."""
    plan = plan_for(country)
    numbers: set[str] = set()
    while len(numbers) < count:
        prefix = rng.choice(plan.mobile_prefixes)
        rest = plan.national_length - len(prefix)
        numbers.add(f"{plan.calling_code}{prefix}{rng.randrange(10**rest):0{rest}d}")
    return sorted(numbers)
