"""Reserved keywords and the MO's service keyword."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.errors import InvalidKeywords
from routing.keywords import (
    DEFAULT_KEYWORDS,
    ENGLISH_KEYWORDS,
    SPANISH_KEYWORDS,
    KeywordKind,
    KeywordMatch,
    KeywordSet,
    default_keywords,
    detect_keyword,
    normalise_keyword,
    service_keyword,
    split_first_word,
)


@pytest.mark.parametrize(
    ("text", "kind", "keyword", "rest"),
    [
        ("BAJA", KeywordKind.OPT_OUT, "BAJA", ""),
        ("baja", KeywordKind.OPT_OUT, "BAJA", ""),
        ("  Baja.  ", KeywordKind.OPT_OUT, "BAJA", ""),
        ("BAJÁ", KeywordKind.OPT_OUT, "BAJA", ""),
        ("baja alias", KeywordKind.OPT_OUT, "BAJA", "alias"),
        ("Stop\tALIAS", KeywordKind.OPT_OUT, "STOP", "ALIAS"),
        ("cancelar", KeywordKind.OPT_OUT, "CANCELAR", ""),
        ("Alta", KeywordKind.OPT_IN, "ALTA", ""),
        ("start ALIAS", KeywordKind.OPT_IN, "START", "ALIAS"),
        ("¡Ayuda!", KeywordKind.HELP, "AYUDA", ""),
        ("help", KeywordKind.HELP, "HELP", ""),
        ("ＢＡＪＡ", KeywordKind.OPT_OUT, "BAJA", ""),
    ],
)
def test_spanish_keywords_are_found(text: str, kind: KeywordKind, keyword: str, rest: str) -> None:
    assert SPANISH_KEYWORDS.detect(text) == KeywordMatch(kind, keyword, rest)
    assert detect_keyword(text, SPANISH_KEYWORDS) == KeywordMatch(kind, keyword, rest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hola",
        "alias hola",
        "bajamos al bar",
        "Baja California es preciosa",
        "quiero darme de baja",
        "STOPS",
        "b a j a",
    ],
)
def test_chat_is_not_a_keyword(text: str) -> None:
    assert SPANISH_KEYWORDS.detect(text) is None


def test_service_of_a_match_is_the_normalised_trailing_word() -> None:
    match = SPANISH_KEYWORDS.detect("baja álias")
    assert match is not None
    assert match.rest == "álias"
    assert match.service == "ALIAS"
    only = SPANISH_KEYWORDS.detect("baja")
    assert only is not None and only.service is None


def test_max_trailing_words_widens_or_narrows_matching() -> None:
    lenient = KeywordSet.of(opt_out=["stop"], opt_in=[], help=[], max_trailing_words=None)
    match = lenient.detect("STOP sending me messages")
    assert match == KeywordMatch(KeywordKind.OPT_OUT, "STOP", "sending me messages")
    strict = KeywordSet.of(opt_out=["stop"], opt_in=[], help=[], max_trailing_words=0)
    assert strict.detect("stop") is not None
    assert strict.detect("stop alias") is None


def test_english_defaults_and_country_defaults() -> None:
    assert ENGLISH_KEYWORDS.detect("unsubscribe") == KeywordMatch(KeywordKind.OPT_OUT, "UNSUBSCRIBE", "")
    assert ENGLISH_KEYWORDS.detect("baja") is None
    assert default_keywords("es") is SPANISH_KEYWORDS
    assert default_keywords("MX") is SPANISH_KEYWORDS
    assert default_keywords("GB") is ENGLISH_KEYWORDS
    assert default_keywords("FR") is ENGLISH_KEYWORDS
    assert default_keywords(None) is ENGLISH_KEYWORDS
    assert DEFAULT_KEYWORDS["US"] is ENGLISH_KEYWORDS


def test_normalise_keyword_and_service_keyword() -> None:
    assert normalise_keyword(" ¿Qué? ") == "QUE"
    assert normalise_keyword("...") == ""
    assert normalise_keyword("straße") == "STRASSE"
    assert service_keyword("  alias hola que tal") == "ALIAS"
    assert service_keyword("Álias") == "ALIAS"
    assert service_keyword("   ") is None
    assert service_keyword("!!! hola") is None
    assert split_first_word("  uno  dos tres ") == ("uno", "dos tres")
    assert split_first_word("") == ("", "")


def test_from_dict_builds_a_set() -> None:
    keywords = KeywordSet.from_dict({"opt_out": ["baja", "Stop"], "opt_in": "alta", "help": ["ayuda"]})
    assert keywords.opt_out == frozenset({"BAJA", "STOP"})
    assert keywords.opt_in == frozenset({"ALTA"})
    assert keywords.max_trailing_words == 1
    assert keywords.kind_of("AYUDA") is KeywordKind.HELP
    assert keywords.kind_of("HOLA") is None
    any_length = KeywordSet.from_dict({"opt_out": ["stop"], "max_trailing_words": 3})
    assert any_length.max_trailing_words == 3
    assert any_length.opt_in == frozenset()
    unbounded = KeywordSet.from_dict({"opt_out": ["stop"], "max_trailing_words": "any"})
    assert unbounded.max_trailing_words is None
    assert unbounded.detect("stop it now please") is not None


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"opt_out": ["baja alias"]}, "opt_out", "must be one word"),
        ({"opt_out": ["!!!"]}, "opt_out", "must be one word"),
        ({"opt_out": [3]}, "opt_out", "item 0 must be a non-empty string"),
        ({"opt_out": ["baja"], "opt_in": ["BAJA"]}, "opt_in", "both opt_out and opt_in"),
        ({"max_trailing_words": -1}, "max_trailing_words", "must be >= 0"),
        ({"max_trailing_words": True}, "max_trailing_words", "must be an integer"),
        ({"max_trailing_words": "all"}, "max_trailing_words", "must be an integer"),
        ({"opt_outs": ["baja"]}, "opt_outs", "unknown field"),
    ],
)
def test_from_dict_names_the_bad_field(data: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(InvalidKeywords) as caught:
        KeywordSet.from_dict(data, subject="keywords for 'ES'")
    assert caught.value.field == field
    assert reason in str(caught.value)
    assert str(caught.value).startswith("keywords for 'ES', field")


def test_direct_construction_requires_normalised_words() -> None:
    with pytest.raises(InvalidKeywords, match="write 'BAJA'"):
        KeywordSet(frozenset({"baja"}), frozenset(), frozenset())
    with pytest.raises(InvalidKeywords, match="max_trailing_words"):
        KeywordSet(frozenset({"BAJA"}), frozenset(), frozenset(), -2)


@given(st.text(max_size=20))
def test_normalise_keyword_is_idempotent(word: str) -> None:
    once = normalise_keyword(word)
    assert normalise_keyword(once) == once


@given(
    st.sampled_from(sorted(SPANISH_KEYWORDS.opt_out)),
    st.sampled_from(["", " ", "\t", "  \n"]),
    st.sampled_from(["", ".", "!", "..."]),
    st.booleans(),
)
def test_any_spelling_of_an_opt_out_keyword_is_found(
    keyword: str, space: str, punctuation: str, lower: bool
) -> None:
    text = f"{space}{keyword.lower() if lower else keyword}{punctuation}{space}"
    match = SPANISH_KEYWORDS.detect(text)
    assert match is not None
    assert match.kind is KeywordKind.OPT_OUT and match.keyword == keyword
