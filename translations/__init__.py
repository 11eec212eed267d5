"""One catalogue system for every text a person reads: the panel and its plugins, the daemon's automatic
replies and the simulator's pages.

Texts are written in English in the code (``_("Sign out")``, ``N_("Queued")`` where a text is only named and
translated later) and translated in gettext ``.po`` files, one per language and domain, under a ``locale/``
folder beside the code: ``<package>/locale/<language>/LC_MESSAGES/<domain>.po``. English is the source
language and needs no file. The files are read with Babel when a process starts (no compile step, nothing
on the request path); ``docs/I18N.md`` says how a translator works with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

__all__ = [
    "SOURCE_LANGUAGE",
    "Catalogue",
    "N_",
    "load_catalogue",
    "negotiate_language",
    "placeholder_problems",
    "placeholders",
    "po_path",
    "problems",
    "read_catalogue",
    "texts_of",
]

#: The language the code's texts are written in; it needs no catalogue.
SOURCE_LANGUAGE = "en"

_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]")


def N_(message: str) -> str:  # the name gettext's extraction looks for
    """Mark a text for extraction where it is defined; it is translated where it is shown."""
    return message


def NP_(context: str, message: str) -> str:  # extracted with its context (``-k NP_:1c,2``)
    """:func:`N_` for a text that means something else elsewhere: shown with ``pgettext(context, ...)``."""
    return message


def po_path(locale_dir: Path, language: str, domain: str) -> Path:
    return Path(locale_dir) / language / "LC_MESSAGES" / f"{domain}.po"


def read_catalogue(locale_dir: Path, language: str, domain: str) -> Catalog | None:
    """The ``.po`` file of one language and domain, or None when there is none."""
    path = po_path(locale_dir, language, domain)
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=domain)


def placeholders(text: str) -> set[str]:
    """The named ``%(name)s`` placeholders of a text."""
    return set(_PLACEHOLDER.findall(text))


def problems(catalog: Catalog, expected: Iterable[str | tuple[str, str]] = ()) -> list[str]:
    """What keeps a catalogue from being complete: a text not translated (or still fuzzy), a plural
    without every form of the language, a translation whose placeholders differ from the English text's
    (`placeholder_problems`), an ``expected`` msgid (``(context, msgid)`` for a contextual one) missing."""
    found: list[str] = []
    present: set[str | tuple[str, str]] = set()
    for message in catalog:
        if not message.id:
            continue
        ids, strings = texts_of(message)
        present.add((message.context, ids[0]) if message.context else ids[0])
        where = f"{catalog.locale}: {ids[0]!r}"
        if message.fuzzy:
            found.append(f"{where} is fuzzy")
        elif not all(strings):
            found.append(f"{where} is not translated")
        elif len(ids) > 1 and len(strings) != catalog.num_plurals:
            found.append(f"{where} has {len(strings)} plural forms, the language has {catalog.num_plurals}")
    found.extend(placeholder_problems(catalog))
    found.extend(f"{catalog.locale}: {msgid!r} is missing" for msgid in expected if msgid not in present)
    return found


def placeholder_problems(catalog: Catalog) -> list[str]:
    """Translations that name a placeholder the English text does not, or leave one out (a plural form
    may leave out the count, ``%(num)d``: "un mensaje")."""
    found: list[str] = []
    for message in catalog:
        if not message.id:
            continue
        ids, strings = texts_of(message)
        wanted = set().union(*(placeholders(text) for text in ids))
        for text in filter(None, strings):
            if placeholders(text) - wanted or wanted - placeholders(text) - {"num"}:
                found.append(
                    f"{catalog.locale}: {ids[0]!r} translated as {text!r}: placeholders"
                    f" {sorted(placeholders(text))}, not {sorted(wanted)}"
                )
    return found


def texts_of(message: Message) -> tuple[list[str], list[str]]:
    """The English text(s) of a message (singular and plural) and its translation(s)."""
    ids = [message.id] if isinstance(message.id, str) else list(message.id)
    strings = [message.string] if isinstance(message.string, str) else list(message.string or ())
    return ids, strings


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The translations of one or more domains for every language a program offers."""

    languages: tuple[str, ...]
    default_language: str
    _by_language: Mapping[str, NullTranslations]

    def translations(self, language: str) -> NullTranslations:
        found = self._by_language.get(language)
        return found if found is not None else self._by_language[self.default_language]

    def gettext(self, language: str, message: str, /, **params: object) -> str:
        text = self.translations(language).gettext(message)
        return text % params if params else text

    def ngettext(self, language: str, singular: str, plural: str, n: int, /, **params: object) -> str:
        text = self.translations(language).ngettext(singular, plural, n)
        return text % {"num": n, **params}

    def pgettext(self, language: str, context: str, message: str, /, **params: object) -> str:
        text = str(self.translations(language).pgettext(context, message))
        return text % params if params else text


def load_catalogue(
    sources: Sequence[tuple[Path, str]], languages: Sequence[str], default_language: str
) -> Catalogue:
    """Merge the ``(locale folder, domain)`` sources per language into one set of translations.

    Where two sources translate the same English text, the first translation wins: a msgid means one text
    in one program (give a different sense its own ``msgctxt``, ``pgettext``)."""
    if default_language not in languages:
        raise ValueError(f"unsupported default language {default_language!r}")
    by_language: dict[str, NullTranslations] = {}
    for language in languages:
        merged: Catalog | None = None  # the first file's header (its plural rule) is the merged one's
        for locale_dir, domain in sources:
            catalog = read_catalogue(locale_dir, language, domain)
            if catalog is None:
                continue
            if merged is None:
                merged = catalog
                continue
            for message in catalog:
                existing = merged.get(message.id, message.context) if message.id else message
                if existing is not None and not any(texts_of(existing)[1]):
                    merged.delete(message.id, message.context)  # setting would keep the empty one
                    existing = None
                if existing is None:
                    merged[message.id] = message
        by_language[language] = NullTranslations() if merged is None else _compiled(merged)
    return Catalogue(tuple(languages), default_language, by_language)


def _compiled(catalog: Catalog) -> Translations:
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def negotiate_language(accept_language: str | None, supported: Sequence[str], default: str) -> str:
    """The best supported language of an Accept-Language header (q-values honoured)."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in supported and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else default
