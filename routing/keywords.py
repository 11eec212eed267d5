"""Reserved keywords (BAJA / STOP, ALTA / START, AYUDA / HELP) found before an MO reaches a chat.

Matching looks at the first word only and ignores case, accents, surrounding punctuation and
extra whitespace: 'baja', ' Baja. ', 'BAJÁ' all read 'BAJA'. A keyword may be followed by the
service keyword it applies to ('BAJA ALIAS'). Longer messages are chat, not commands, by default:
'Baja California es preciosa' must not unsubscribe anyone (``max_trailing_words`` widens this
where a regulator wants 'STOP sending me messages' honoured too).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from routing._fields import FieldReader
from routing.errors import InvalidKeywords


class KeywordKind(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """A reserved keyword at the start of an MO."""

    kind: KeywordKind
    #: The keyword as configured (normalised): 'BAJA'.
    keyword: str
    #: What followed the keyword, whitespace-trimmed, as the subscriber wrote it: 'alias'.
    rest: str

    @property
    def service(self) -> str | None:
        """The service keyword the command applies to ('BAJA ALIAS' -> 'ALIAS'), if one was given."""
        return service_keyword(self.rest)


def normalise_keyword(word: str) -> str:
    """Upper case, accents removed, surrounding punctuation dropped: ' ¡BáJa! ' -> 'BAJA'."""
    decomposed = unicodedata.normalize("NFKD", word)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    stripped = bare.strip()
    start, end = 0, len(stripped)
    while start < end and not stripped[start].isalnum():
        start += 1
    while end > start and not stripped[end - 1].isalnum():
        end -= 1
    return stripped[start:end].casefold().upper()


def split_first_word(text: str) -> tuple[str, str]:
    """(first word as written, the rest trimmed); ('', '') for a blank text."""
    parts = text.strip().split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) == 2 else ""


def service_keyword(text: str) -> str | None:
    """The normalised first word of an MO, used to route it ('alias hola' -> 'ALIAS'); None if blank."""
    first, _ = split_first_word(text)
    return normalise_keyword(first) or None


@dataclass(frozen=True, slots=True)
class KeywordSet:
    """The reserved keywords of one country or language; all stored normalised."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]
    help: frozenset[str]
    #: How many words may follow the keyword for it still to count; ``None`` means any number.
    max_trailing_words: int | None = 1

    def __post_init__(self) -> None:
        subject = "keyword set"
        seen: dict[str, KeywordKind] = {}
        for kind, words in self._by_kind():
            for word in words:
                if word != normalise_keyword(word) or not word or len(word.split()) != 1:
                    raise InvalidKeywords(
                        subject,
                        f"{word!r} is not a normalised single word (write {normalise_keyword(word)!r})",
                        field=kind.value,
                    )
                if word in seen:
                    raise InvalidKeywords(
                        subject, f"{word!r} is both {seen[word].value} and {kind.value}", field=kind.value
                    )
                seen[word] = kind
        if self.max_trailing_words is not None and self.max_trailing_words < 0:
            raise InvalidKeywords(subject, "must be >= 0, or None for any number", field="max_trailing_words")

    def _by_kind(self) -> tuple[tuple[KeywordKind, frozenset[str]], ...]:
        return (
            (KeywordKind.OPT_OUT, self.opt_out),
            (KeywordKind.OPT_IN, self.opt_in),
            (KeywordKind.HELP, self.help),
        )

    @classmethod
    def of(
        cls,
        *,
        opt_out: Iterable[str],
        opt_in: Iterable[str],
        help: Iterable[str],
        max_trailing_words: int | None = 1,
    ) -> KeywordSet:
        """A set from keywords written any way ('baja', 'Stop'); they are normalised here."""

        def normalised(words: Iterable[str]) -> frozenset[str]:
            return frozenset(normalise_keyword(word) for word in words)

        return cls(normalised(opt_out), normalised(opt_in), normalised(help), max_trailing_words)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, subject: str = "keyword set") -> KeywordSet:
        """From ``{"opt_out": [...], "opt_in": [...], "help": [...], "max_trailing_words": 1}``.

        A missing list is empty. ``max_trailing_words`` is a number >= 0 (1 when absent) or the string
        'any' (TOML has no null) for a keyword followed by any number of words.
        """
        reader = FieldReader(
            data,
            subject=subject,
            error=InvalidKeywords,
            allowed=("opt_out", "opt_in", "help", "max_trailing_words"),
        )
        lists: dict[str, list[str]] = {}
        for key in ("opt_out", "opt_in", "help"):
            words = reader.strings(key)
            for word in words:
                if len(word.split()) != 1 or not normalise_keyword(word):
                    raise reader.fail(key, f"{word!r} must be one word with letters or digits")
            lists[key] = list(words)
        trailing: int | None = 1
        if reader.raw("max_trailing_words") == "any":
            trailing = None
        elif reader.has("max_trailing_words"):
            trailing = reader.integer("max_trailing_words", 1, minimum=0)
        try:
            return cls.of(
                opt_out=lists["opt_out"],
                opt_in=lists["opt_in"],
                help=lists["help"],
                max_trailing_words=trailing,
            )
        except InvalidKeywords as error:
            raise InvalidKeywords(subject, error.reason, field=error.field) from error

    def kind_of(self, keyword: str) -> KeywordKind | None:
        for kind, words in self._by_kind():
            if keyword in words:
                return kind
        return None

    def detect(self, text: str) -> KeywordMatch | None:
        """The reserved keyword an MO starts with, or ``None`` when the MO is for the chat."""
        first, rest = split_first_word(text)
        keyword = normalise_keyword(first)
        kind = self.kind_of(keyword) if keyword else None
        if kind is None:
            return None
        if self.max_trailing_words is not None and len(rest.split()) > self.max_trailing_words:
            return None
        return KeywordMatch(kind, keyword, rest)


#: Spanish defaults (Spain and the Spanish-speaking countries served).
SPANISH_KEYWORDS = KeywordSet.of(
    opt_out=("BAJA", "STOP", "CANCELAR"), opt_in=("ALTA", "START"), help=("AYUDA", "HELP")
)
#: English defaults; STOP / START / HELP are understood nearly everywhere, so other countries use these.
ENGLISH_KEYWORDS = KeywordSet.of(
    opt_out=("STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"),
    opt_in=("START", "UNSTOP"),
    help=("HELP", "INFO"),
)

#: Default keyword set by ISO country code; countries not listed get ``ENGLISH_KEYWORDS``.
DEFAULT_KEYWORDS: Mapping[str, KeywordSet] = MappingProxyType(
    {
        **{iso: SPANISH_KEYWORDS for iso in ("ES", "MX", "AR", "CO", "CL", "PE")},
        **{iso: ENGLISH_KEYWORDS for iso in ("GB", "US")},
    }
)


def default_keywords(country: str | None) -> KeywordSet:
    """The default reserved keywords for a country (ISO code, any case)."""
    return DEFAULT_KEYWORDS.get((country or "").strip().upper(), ENGLISH_KEYWORDS)


def detect_keyword(text: str, keywords: KeywordSet) -> KeywordMatch | None:
    """Module-level spelling of ``keywords.detect(text)``."""
    return keywords.detect(text)
