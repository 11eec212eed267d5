"""The virtual phone page, in the reader's language: ``?lang=`` when given (the page's own switch),
else the browser's Accept-Language. Its texts are English in the template and in `SCRIPT_TEXTS`, and
translated in ``simulator/locale/<language>/LC_MESSAGES/simulator.po`` (docs/I18N.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import MappingProxyType

import jinja2

import translations.jinja
from translations import N_, Catalogue, load_catalogue, negotiate_language

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
LANGUAGE_NAMES = MappingProxyType({"es": "Español", "en": "English"})
HERE = Path(__file__).resolve().parent
DOMAIN = "simulator"

#: Texts the page's script writes; ``%(name)s`` is filled in by the script.
SCRIPT_TEXTS = MappingProxyType(
    {
        "live": N_("live: %(number)s on %(carrier)s"),
        "retrying": N_("disconnected, retrying…"),
        "receipt": N_("receipt %(id)s: %(status)s"),
    }
)


@cache
def catalogue() -> Catalogue:
    return load_catalogue([(HERE / "locale", DOMAIN)], LANGUAGES, DEFAULT_LANGUAGE)


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    translations.jinja.install(environment)
    return environment


def choose_language(asked: str | None, accept_language: str | None) -> str:
    if asked in LANGUAGES:
        return asked
    return negotiate_language(accept_language, LANGUAGES, DEFAULT_LANGUAGE)


def render_phone(language: str) -> str:
    chosen = catalogue().translations(language)
    template = _environment().get_template("phone.html")
    script_texts = {key: chosen.gettext(text) for key, text in SCRIPT_TEXTS.items()}
    return template.render(
        lang=language,
        languages=LANGUAGES,
        language_names=LANGUAGE_NAMES,
        script_texts=script_texts,
        **{translations.jinja.CONTEXT_KEY: chosen},
    )
