"""MSISDN normalisation to E.164 ('+' and digits, e.g. '+34600111222') and formats carriers ask for.

Carriers hand us subscriber numbers in every shape: '+34600111222', '0034600111222', '34600111222'
with TON 0, '600111222' with TON 2, with spaces or dashes typed by a person. ``normalise_msisdn``
turns them into one canonical E.164 string, given the carrier's country, and refuses what is not a
plausible number with a message that says what is wrong.

The built-in table covers the countries served first. Numbers of other countries are accepted in
international form ('+' or TON 1) with a length check only, so a roaming foreigner still gets an
answer; ``country_of`` returns ``None`` for them.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from routing.errors import InvalidNumber
from smpp.constants import NPI, TON

#: E.164: a country code that does not start with 0, at most 15 digits in all.
MAX_E164_DIGITS = 15
#: The shortest international numbers in service have 7 digits (country code included).
MIN_E164_DIGITS = 7
_E164 = re.compile(r"\+[1-9]\d{6,14}", re.ASCII)
#: Characters people and gateways put inside numbers; they carry no meaning.
_SEPARATORS = str.maketrans("", "", " -.()/\t\u00a0\u2009\u202f")
#: International dialling prefixes tolerated before a number sent with TON 1.
_COMMON_IDD_PREFIXES = ("00", "011")
#: NPIs that never identify a telephone number.
_NON_PHONE_NPIS = frozenset({NPI.DATA, NPI.TELEX, NPI.INTERNET, NPI.WAP})
# TON values as plain ints: reading an enum member costs an attribute look-up on every number.
_TON_INTERNATIONAL = int(TON.INTERNATIONAL)
_TON_NATIONAL = int(TON.NATIONAL)
_TON_NOT_A_NUMBER = frozenset({int(TON.ALPHANUMERIC), int(TON.NETWORK_SPECIFIC), int(TON.ABBREVIATED)})


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """What plausible numbers of one country look like.

    The national significant number (NSN) is what follows the country code in E.164.
    """

    iso: str
    name: str
    calling_code: str
    #: Allowed NSN lengths.
    lengths: frozenset[int]
    #: A full match on the NSN.
    pattern: re.Pattern[str]
    #: The pattern in words, for error messages.
    pattern_hint: str
    #: Trunk prefix written before the NSN in national format (France '0'); '' when there is none.
    national_prefix: str = ""
    #: Other prefixes accepted (and dropped) when reading a national number, never written.
    extra_national_prefixes: tuple[str, ...] = ()
    #: International dialling prefixes used inside the country.
    idd_prefixes: tuple[str, ...] = ("00",)
    #: A digit some networks still put after the country code and that E.164 no longer has (Mexico's '1').
    legacy_mobile_prefix: str = ""
    #: A digit that marks mobiles in international format only (Argentina's '9'); not dialled nationally.
    international_mobile_prefix: str = ""

    def drop_legacy(self, nsn: str) -> str:
        prefix = self.legacy_mobile_prefix
        if prefix and nsn.startswith(prefix) and len(nsn) - len(prefix) in self.lengths:
            return nsn[len(prefix) :]
        return nsn

    def nsn_problem(self, nsn: str) -> str | None:
        """Why ``nsn`` is not a plausible number of this country, or ``None`` when it is."""
        if len(nsn) not in self.lengths:
            return (
                f"{len(nsn)} digits after the country code +{self.calling_code}, "
                f"{self.name} numbers have {_describe_lengths(self.lengths)}"
            )
        if self.pattern.fullmatch(nsn) is None:
            return f"not a valid {self.name} number after +{self.calling_code}: {self.pattern_hint}"
        return None


def _describe_lengths(lengths: frozenset[int]) -> str:
    ordered = sorted(lengths)
    if len(ordered) == 1:
        return str(ordered[0])
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]} to {ordered[-1]}"
    return ", ".join(str(n) for n in ordered[:-1]) + f" or {ordered[-1]}"


def _plan(
    iso: str,
    name: str,
    calling_code: str,
    lengths: range | tuple[int, ...],
    pattern: str,
    hint: str,
    *,
    national_prefix: str = "",
    extra_national_prefixes: tuple[str, ...] = (),
    idd_prefixes: tuple[str, ...] = ("00",),
    legacy_mobile_prefix: str = "",
    international_mobile_prefix: str = "",
) -> NumberingPlan:
    return NumberingPlan(
        iso,
        name,
        calling_code,
        frozenset(lengths),
        re.compile(pattern, re.ASCII),
        hint,
        national_prefix,
        extra_national_prefixes,
        idd_prefixes,
        legacy_mobile_prefix,
        international_mobile_prefix,
    )


#: The countries served first, by ISO 3166-1 alpha-2 code.
PLANS: Mapping[str, NumberingPlan] = MappingProxyType(
    {
        p.iso: p
        for p in (
            _plan(
                "ES", "Spain", "34", (9,), r"[5-9]\d{8}", "9 digits starting with 5-9 (mobiles with 6 or 7)"
            ),
            _plan(
                "PT", "Portugal", "351", (9,), r"[2-9]\d{8}", "9 digits starting with 2-9 (mobiles with 9)"
            ),
            _plan(
                "FR", "France", "33", (9,), r"[1-9]\d{8}", "9 digits not starting with 0", national_prefix="0"
            ),
            _plan(
                "IT",
                "Italy",
                "39",
                range(6, 12),
                r"0\d{5,10}|3\d{8,9}|8\d{5,9}",
                "landlines start with 0 (6-11 digits), mobiles with 3 (9-10 digits), services with 8",
            ),
            _plan(
                "DE",
                "Germany",
                "49",
                range(6, 14),
                r"[1-9]\d{5,12}",
                "6-13 digits not starting with 0",
                national_prefix="0",
            ),
            _plan(
                "GB",
                "United Kingdom",
                "44",
                (9, 10),
                r"[1-9]\d{8,9}",
                "9-10 digits not starting with 0",
                national_prefix="0",
            ),
            _plan(
                "MX",
                "Mexico",
                "52",
                (10,),
                r"[2-9]\d{9}",
                "10 digits starting with 2-9",
                extra_national_prefixes=("044", "045", "01"),
                legacy_mobile_prefix="1",
            ),
            _plan(
                "AR",
                "Argentina",
                "54",
                (10, 11),
                r"9[1-3]\d{9}|[1-3]\d{9}",
                "area code (1-3...) and number, 10 digits; mobiles 9 and then 10 digits",
                national_prefix="0",
                international_mobile_prefix="9",
            ),
            _plan(
                "CO",
                "Colombia",
                "57",
                (10,),
                r"3\d{9}|60\d{8}",
                "10 digits: mobiles start with 3, landlines with 60",
            ),
            _plan("CL", "Chile", "56", (9,), r"[2-9]\d{8}", "9 digits starting with 2-9 (mobiles with 9)"),
            _plan(
                "PE",
                "Peru",
                "51",
                (8, 9),
                r"9\d{8}|[1-8]\d{7}",
                "mobiles: 9 digits starting with 9; landlines: 8 digits",
                national_prefix="0",
            ),
            _plan(
                "US",
                "United States",
                "1",
                (10,),
                r"[2-9]\d{2}[2-9]\d{6}",
                "10 digits; area code and exchange start with 2-9",
                extra_national_prefixes=("1",),
                idd_prefixes=("011",),
            ),
        )
    }
)
_BY_CALLING_CODE: Mapping[str, NumberingPlan] = {p.calling_code: p for p in PLANS.values()}
_LONGEST_CALLING_CODE = max(len(code) for code in _BY_CALLING_CODE)


class NumberStyle(StrEnum):
    """How a carrier wants destination numbers written."""

    E164 = "e164"  # '+34600111222'
    INTERNATIONAL = "international"  # '34600111222': country code, no '+'
    NATIONAL = "national"  # '600111222' (with the trunk prefix where the country has one: '0612345678')


def plan_for(iso: str | None) -> NumberingPlan | None:
    """The numbering plan of a country (ISO code, any case), or ``None`` if it is not in the table."""
    return PLANS.get(iso.strip().upper()) if iso else None


def is_e164(value: str) -> bool:
    """True for the canonical form this package produces: '+' and 7-15 digits, no leading 0."""
    return _E164.fullmatch(value) is not None


def normalise_msisdn(
    raw: str, country: str | None = None, *, ton: int | None = None, npi: int | None = None
) -> str:
    """``raw`` as E.164 ('+34600111222'), read the way a carrier of ``country`` would mean it.

    ``ton`` / ``npi`` are the SMPP hints that came with the address: TON 1 (international) means
    the digits already start with the country code; TON 2 (national) means they do not; any other
    TON lets the number's shape decide. For a bare number the national reading wins when both
    readings are plausible (an Italian '39...' mobile), since that is how a subscriber types it.
    Raises ``InvalidNumber`` saying what is wrong.
    """
    if ton is not None and ton in _TON_NOT_A_NUMBER:
        if ton == TON.ALPHANUMERIC:
            raise InvalidNumber(raw, "is an alphanumeric address (TON 5), not a phone number")
        raise InvalidNumber(raw, f"is a short code (TON {ton}), not a phone number")
    if npi is not None and npi in _NON_PHONE_NPIS:
        raise InvalidNumber(raw, f"NPI {npi} ({NPI(npi).name}) does not identify a phone number")
    has_plus, digits = _clean(raw)
    plan = plan_for(country)
    if has_plus:
        return _from_international(raw, digits)
    if ton == _TON_INTERNATIONAL:
        # Some SMSCs leave the dialling prefix in front of a TON 1 number; E.164 never starts with 0.
        idd_prefixes = (*plan.idd_prefixes, *_COMMON_IDD_PREFIXES) if plan else _COMMON_IDD_PREFIXES
        return _from_international(raw, _strip_first_prefix(digits, idd_prefixes))
    if plan is None:
        return _without_home_plan(raw, digits, country)
    for idd in plan.idd_prefixes:
        if digits.startswith(idd):
            return _from_international(raw, digits[len(idd) :])
    national, problem = _read_national(digits, plan)
    if national is not None:
        return national
    if ton == _TON_NATIONAL:
        raise InvalidNumber(raw, f"is not a {plan.name} national number: {problem}")
    international = _read_international_without_plus(digits)
    if international is not None:
        return international
    raise InvalidNumber(
        raw,
        f"is neither a {plan.name} national number ({problem}) "
        "nor an international number with a known country code",
    )


def country_of(e164: str) -> str | None:
    """ISO code of the country an E.164 number belongs to, ``None`` if its code is not in the table.

    '+1' is shared by the North American Numbering Plan; it is reported as 'US'.
    """
    _require_e164(e164)
    plan = _plan_by_prefix(e164[1:])
    return plan.iso if plan else None


def to_national(e164: str) -> str:
    """The number as dialled inside its country: '+33612345678' -> '0612345678'."""
    _require_e164(e164)
    plan = _plan_by_prefix(e164[1:])
    if plan is None:
        raise InvalidNumber(e164, "its country code is not in the numbering table; no national format known")
    nsn = e164[1 + len(plan.calling_code) :]
    marker = plan.international_mobile_prefix
    if marker and nsn.startswith(marker) and len(nsn) - len(marker) in plan.lengths:
        nsn = nsn[len(marker) :]
    return plan.national_prefix + nsn


def to_international(e164: str) -> str:
    """The number without its '+', country code first: '+34600111222' -> '34600111222' (how SMPP writes
    an address of TON 1, and how the gateway keeps a subscriber's number)."""
    _require_e164(e164)
    return e164[1:]


def format_for_carrier(e164: str, style: NumberStyle) -> str:
    """The number written the way a carrier wants it in destination_addr."""
    if style is NumberStyle.E164:
        _require_e164(e164)
        return e164
    if style is NumberStyle.INTERNATIONAL:
        return to_international(e164)
    return to_national(e164)


# --- internals --------------------------------------------------------------------------------------


def _require_e164(value: str) -> None:
    if not is_e164(value):
        raise InvalidNumber(value, "is not in E.164 form ('+' and 7-15 digits, e.g. '+34600111222')")


def _clean(raw: str) -> tuple[bool, str]:
    """(had a leading '+', the digits) with separators removed; fullwidth digits become ASCII."""
    if raw.isascii():
        # The usual '+34600111222' / '34600111222': NFKC leaves ASCII alone, and digits hold no separator.
        text = raw.strip()
        has_plus = text.startswith("+")
        digits = text[1:] if has_plus else text
        if digits.isdigit():
            return has_plus, digits
    return _clean_normalising(raw)


def _clean_normalising(raw: str) -> tuple[bool, str]:
    """:func:`_clean` the general way: NFKC, strip, separators out, then the checks."""
    text = unicodedata.normalize("NFKC", raw).strip().translate(_SEPARATORS)
    has_plus = text.startswith("+")
    digits = text[1:] if has_plus else text
    if not digits:
        raise InvalidNumber(raw, "has no digits")
    for char in digits:
        if not ("0" <= char <= "9"):
            raise InvalidNumber(raw, f"contains {char!r}; only digits, separators and a leading '+' allowed")
    return has_plus, digits


def _strip_first_prefix(digits: str, prefixes: tuple[str, ...]) -> str:
    for prefix in _longest_first(prefixes):
        if digits.startswith(prefix):
            return digits[len(prefix) :]
    return digits


@functools.lru_cache(maxsize=64)
def _longest_first(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted once per plan, not on every MO: this runs on the MO hot path."""
    return tuple(sorted(prefixes, key=len, reverse=True))


def _plan_by_prefix(international_digits: str) -> NumberingPlan | None:
    """The plan whose calling code starts these digits (calling codes are prefix-free)."""
    for size in range(1, _LONGEST_CALLING_CODE + 1):
        plan = _BY_CALLING_CODE.get(international_digits[:size])
        if plan is not None:
            return plan
    return None


def _from_international(raw: str, digits: str) -> str:
    """Digits that start with a country code, checked and made canonical."""
    if not digits:
        raise InvalidNumber(raw, "has a dialling prefix but no number after it")
    if digits[0] == "0":
        raise InvalidNumber(raw, "the country code cannot start with 0")
    if len(digits) > MAX_E164_DIGITS:
        raise InvalidNumber(raw, f"has {len(digits)} digits; E.164 numbers have at most {MAX_E164_DIGITS}")
    plan = _plan_by_prefix(digits)
    if plan is None:
        if len(digits) < MIN_E164_DIGITS:
            raise InvalidNumber(
                raw, f"has {len(digits)} digits; international numbers have at least {MIN_E164_DIGITS}"
            )
        return "+" + digits
    nsn = plan.drop_legacy(digits[len(plan.calling_code) :])
    problem = plan.nsn_problem(nsn)
    if problem is not None:
        raise InvalidNumber(raw, problem)
    return f"+{plan.calling_code}{nsn}"


def _read_national(digits: str, plan: NumberingPlan) -> tuple[str | None, str]:
    """(E.164, '') for a plausible national number, else (None, why it is not one).

    The trunk prefix is optional: '0612345678' and '612345678' are both French mobiles.
    """
    prefixes = [p for p in (plan.national_prefix, *plan.extra_national_prefixes) if p]
    candidates = [digits[len(p) :] for p in prefixes if digits.startswith(p)]
    first_problem = ""
    for nsn in (*candidates, digits):
        problem = plan.nsn_problem(nsn)
        if problem is None:
            return f"+{plan.calling_code}{nsn}", ""
        first_problem = first_problem or problem
    return None, first_problem


def _read_international_without_plus(digits: str) -> str | None:
    """E.164 when the digits are a valid number of a known country written with its code, else None."""
    if digits[0] == "0" or len(digits) > MAX_E164_DIGITS:
        return None
    plan = _plan_by_prefix(digits)
    if plan is None:
        return None
    nsn = plan.drop_legacy(digits[len(plan.calling_code) :])
    return f"+{plan.calling_code}{nsn}" if plan.nsn_problem(nsn) is None else None


def _without_home_plan(raw: str, digits: str, country: str | None) -> str:
    """No national rules to apply: only an international reading is possible."""
    stripped = _strip_first_prefix(digits, _COMMON_IDD_PREFIXES)
    if stripped != digits:
        return _from_international(raw, stripped)
    international = _read_international_without_plus(digits)
    if international is not None:
        return international
    known = f"national numbers of {country!r} are not known" if country else "no country was given"
    raise InvalidNumber(raw, f"has no recognisable country code and {known}")
