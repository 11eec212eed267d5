"""MSISDN normalisation to E.164, country look-up and carrier formats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.errors import InvalidAddress, InvalidNumber, RoutingError
from routing.numbers import (
    PLANS,
    NumberStyle,
    _clean,
    _clean_normalising,
    country_of,
    format_for_carrier,
    is_e164,
    normalise_msisdn,
    plan_for,
    to_national,
)
from smpp.constants import NPI, TON


@pytest.mark.parametrize(
    ("raw", "country", "ton", "expected"),
    [
        # Spain: every shape a carrier or a person produces
        ("+34600111222", "ES", None, "+34600111222"),
        ("0034600111222", "ES", None, "+34600111222"),
        ("34600111222", "ES", None, "+34600111222"),
        ("600111222", "ES", None, "+34600111222"),
        ("600 11 12 22", "ES", None, "+34600111222"),
        ("600-111-222", "es", None, "+34600111222"),
        ("(+34) 600.111.222", "ES", None, "+34600111222"),
        (
            "\uff0b\uff13\uff14\uff16\uff10\uff10\uff11\uff11\uff11\uff12\uff12\uff12",
            "ES",
            None,
            "+34600111222",
        ),
        ("34600111222", "ES", TON.INTERNATIONAL, "+34600111222"),
        ("0034600111222", "ES", TON.INTERNATIONAL, "+34600111222"),
        ("600111222", "ES", TON.NATIONAL, "+34600111222"),
        ("600111222", "ES", TON.UNKNOWN, "+34600111222"),
        ("34600111222", "ES", TON.UNKNOWN, "+34600111222"),
        # trunk prefixes dropped; also accepted without them
        ("0612345678", "FR", None, "+33612345678"),
        ("612345678", "FR", TON.NATIONAL, "+33612345678"),
        ("07700 900123", "GB", None, "+447700900123"),
        ("01512 3456789", "DE", None, "+4915123456789"),
        ("0 912 345 678", "PE", None, "+51912345678"),
        ("912345678", "PT", None, "+351912345678"),
        ("00351912345678", "PT", None, "+351912345678"),
        ("3001234567", "CO", None, "+573001234567"),
        ("912345678", "CL", None, "+56912345678"),
        # Italy keeps the 0 of landlines; a bare '39...' mobile reads nationally
        ("0612345678", "IT", None, "+390612345678"),
        ("3931234567", "IT", None, "+393931234567"),
        ("393331234567", "IT", None, "+393331234567"),
        # NANP: trunk '1', dialling prefix '011'
        ("(617) 555-1234", "US", None, "+16175551234"),
        ("1 617 555 1234", "US", None, "+16175551234"),
        ("011 34 600111222", "US", None, "+34600111222"),
        # Mexico: the legacy mobile '1' after +52 and the old national prefixes are dropped
        ("+521 55 1234 5678", "MX", None, "+525512345678"),
        ("5215512345678", "MX", None, "+525512345678"),
        ("044 55 1234 5678", "MX", None, "+525512345678"),
        ("5512345678", "MX", None, "+525512345678"),
        # Argentina: the international mobile '9' is kept
        ("+54 9 11 2345 6789", "AR", None, "+5491123456789"),
        ("011 2345 6789", "AR", None, "+541123456789"),
        # a foreign number written without '+' on a Spanish carrier: a known country's valid number
        ("447700900123", "ES", None, "+447700900123"),
        # countries outside the table: accepted in international form, length checked only
        ("+7 912 345 67 89", "ES", None, "+79123456789"),
        ("0079123456789", None, None, "+79123456789"),
        ("79123456789", "RU", TON.INTERNATIONAL, "+79123456789"),
        ("34600111222", None, None, "+34600111222"),
        ("34600111222", "BR", None, "+34600111222"),
    ],
)
def test_normalise_msisdn(raw: str, country: str | None, ton: int | None, expected: str) -> None:
    assert normalise_msisdn(raw, country, ton=ton) == expected


@pytest.mark.parametrize(
    ("raw", "country", "ton", "npi", "reason"),
    [
        ("", "ES", None, None, "has no digits"),
        ("+", "ES", None, None, "has no digits"),
        ("600ABC222", "ES", None, None, "contains 'A'"),
        ("+34+600111222", "ES", None, None, "contains '+'"),
        ("\u0666\u0660\u0660111222", "ES", None, None, "contains"),
        ("6001112", "ES", None, None, "7 digits after the country code +34, Spain numbers have 9"),
        ("6001112", "ES", TON.NATIONAL, None, "is not a Spain national number"),
        ("+34 500", "ES", None, None, "3 digits after the country code +34"),
        ("+34 100111222", "ES", None, None, "9 digits starting with 5-9"),
        ("+1 012 555 1234", "US", None, None, "area code and exchange start with 2-9"),
        ("+4412345", "GB", None, None, "9 or 10"),
        ("+4912345", "DE", None, None, "6 to 13"),
        ("+0034600111222", "ES", None, None, "country code cannot start with 0"),
        ("00", "ES", None, None, "no number after it"),
        ("+1234567890123456", "ES", None, None, "at most 15"),
        ("+79123", None, None, None, "at least 7"),
        ("12", "BR", None, None, "national numbers of 'BR' are not known"),
        ("12", None, None, None, "no country was given"),
        ("eChat", "ES", TON.ALPHANUMERIC, None, "alphanumeric address (TON 5)"),
        ("997745", "ES", TON.NETWORK_SPECIFIC, None, "short code (TON 3)"),
        ("997745", "ES", TON.ABBREVIATED, None, "short code (TON 6)"),
        ("34600111222", "ES", None, NPI.INTERNET, "NPI 14 (INTERNET)"),
    ],
)
def test_normalise_msisdn_refuses_with_a_reason(
    raw: str, country: str | None, ton: int | None, npi: int | None, reason: str
) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalise_msisdn(raw, country, ton=ton, npi=npi)
    assert reason in str(caught.value)
    assert caught.value.address == raw
    assert isinstance(caught.value, InvalidAddress | RoutingError | ValueError)


def test_isdn_and_unknown_npi_are_phone_numbers() -> None:
    assert normalise_msisdn("34600111222", "ES", ton=TON.INTERNATIONAL, npi=NPI.ISDN) == "+34600111222"
    assert normalise_msisdn("600111222", "ES", ton=TON.NATIONAL, npi=NPI.UNKNOWN) == "+34600111222"


def test_country_of() -> None:
    assert country_of("+34600111222") == "ES"
    assert country_of("+351912345678") == "PT"
    assert country_of("+16175551234") == "US"
    assert country_of("+79123456789") is None
    with pytest.raises(InvalidNumber, match="E.164"):
        country_of("34600111222")


def test_to_national() -> None:
    assert to_national("+34600111222") == "600111222"
    assert to_national("+33612345678") == "0612345678"
    assert to_national("+447700900123") == "07700900123"
    assert to_national("+16175551234") == "6175551234"
    assert to_national("+5491123456789") == "01123456789"  # mobiles drop the international '9'
    assert to_national("+541123456789") == "01123456789"
    with pytest.raises(InvalidNumber, match="no national format"):
        to_national("+79123456789")


def test_format_for_carrier() -> None:
    assert format_for_carrier("+34600111222", NumberStyle.E164) == "+34600111222"
    assert format_for_carrier("+34600111222", NumberStyle.INTERNATIONAL) == "34600111222"
    assert format_for_carrier("+33612345678", NumberStyle.NATIONAL) == "0612345678"
    with pytest.raises(InvalidNumber):
        format_for_carrier("0034600111222", NumberStyle.INTERNATIONAL)


def test_is_e164_and_plan_for() -> None:
    assert is_e164("+34600111222")
    assert not is_e164("34600111222")
    assert not is_e164("+0123456789")
    assert not is_e164("+123456")
    assert plan_for(" es ") is PLANS["ES"]
    assert plan_for(None) is None
    assert plan_for("ZZ") is None


def test_every_plan_reads_its_own_examples_back() -> None:
    examples = {
        "ES": "600111222",
        "PT": "912345678",
        "FR": "612345678",
        "IT": "3331234567",
        "DE": "15123456789",
        "GB": "7700900123",
        "MX": "5512345678",
        "AR": "91123456789",
        "CO": "3001234567",
        "CL": "912345678",
        "PE": "912345678",
        "US": "6175551234",
    }
    assert set(examples) == set(PLANS)
    for iso, nsn in examples.items():
        plan = PLANS[iso]
        e164 = f"+{plan.calling_code}{nsn}"
        assert normalise_msisdn(e164, iso) == e164
        assert country_of(e164) == iso
        assert normalise_msisdn(to_national(e164), iso) == e164 or iso == "AR"


# --- properties ------------------------------------------------------------------------------------

_spanish_mobiles = st.from_regex(r"\A[67][0-9]{8}\Z")
_any_plan = st.sampled_from(sorted(PLANS))


@given(_spanish_mobiles, st.sampled_from(["+34{}", "0034{}", "34{}", "{}", "+34 {}", "0034-{}"]))
def test_every_spanish_spelling_gives_the_same_e164(nsn: str, shape: str) -> None:
    assert normalise_msisdn(shape.format(nsn), "ES") == "+34" + nsn


@given(
    st.text(alphabet="+0123456789 -", max_size=20),
    _any_plan,
    st.sampled_from([None, TON.UNKNOWN, TON.INTERNATIONAL, TON.NATIONAL]),
)
def test_normalisation_is_idempotent(raw: str, country: str, ton: int | None) -> None:
    try:
        e164 = normalise_msisdn(raw, country, ton=ton)
    except InvalidNumber:
        return
    assert is_e164(e164)
    assert normalise_msisdn(e164, country) == e164
    assert normalise_msisdn(e164, None) == e164
    assert normalise_msisdn(e164[1:], country, ton=TON.INTERNATIONAL) == e164


@given(st.text(max_size=25), st.one_of(st.none(), _any_plan))
def test_normalisation_only_ever_raises_invalid_number(raw: str, country: str | None) -> None:
    try:
        result = normalise_msisdn(raw, country)
    except InvalidNumber:
        return
    assert is_e164(result)


@given(st.text(st.sampled_from("0123456789+ -.()/\tx\u00a0１٣"), max_size=16))
def test_the_ascii_shortcut_cleans_as_normalising_does(raw: str) -> None:
    try:
        expected = _clean_normalising(raw)
    except InvalidNumber as error:
        with pytest.raises(InvalidNumber) as info:
            _clean(raw)
        assert str(info.value) == str(error)
    else:
        assert _clean(raw) == expected


@pytest.mark.parametrize(
    ("raw", "ton", "npi"),
    [
        ("4242", TON.NETWORK_SPECIFIC, None),
        ("4242", TON.ABBREVIATED, None),
        ("eChat", TON.ALPHANUMERIC, None),
        ("34600111222", None, NPI.DATA),
        ("34600111222", TON.INTERNATIONAL, NPI.INTERNET),
    ],
)
def test_addresses_that_are_not_phone_numbers_are_refused_by_their_ton_or_npi(
    raw: str, ton: int | None, npi: int | None
) -> None:
    with pytest.raises(InvalidNumber, match=r"TON \d|NPI \d+"):
        normalise_msisdn(raw, ton=ton, npi=npi)
