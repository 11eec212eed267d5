"""The translation catalogues are complete: every English text the code and the templates mark (found
the way `make messages` finds them) is translated in every language's ``.po`` of its domain, with the
same placeholders and every plural form, and the catalogues load as the programs load them."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from panel.i18n import LANGUAGES
from translations import SOURCE_LANGUAGE, load_catalogue, placeholders, problems, read_catalogue

ROOT = Path(__file__).resolve().parents[2]
#: folder -> gettext domain, as `make messages` reads them (``I18N_DOMAINS`` in the Makefile).
DOMAINS = {
    "panel": "panel",
    "plugins/auth": "auth",
    "plugins/home": "home",
    "plugins/desk": "desk",
    "plugins/accounts": "accounts",
    "plugins/services": "services",
    "plugins/audit": "audit",
    "plugins/clients": "clients",
    "plugins/conversations": "conversations",
    "plugins/monitor": "monitor",
    "plugins/gallery": "gallery",
    "plugins/reports": "reports",
    "plugins/campaigns": "campaigns",
    "plugins/apikeys": "apikeys",
    "plugins/webhooks": "webhooks",
    "gatewayd": "gatewayd",
    "simulator": "simulator",
}
TRANSLATED = [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
KEYWORDS = {**DEFAULT_KEYWORDS, "translate": (2,), "translate_plural": (2, 3), "NP_": ((1, "c"), 2)}


def test_the_makefile_extracts_the_same_domains() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^I18N_DOMAINS :=((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert found is not None
    pairs = found.group(1).replace("\\\n", " ").split()
    assert dict(pair.split(":") for pair in pairs) == DOMAINS
    assert "-k translate:2 -k translate_plural:2,3 -k NP_:1c,2" in makefile


@cache
def marked(folder: str) -> frozenset[str | tuple[str, str]]:
    """The msgids marked in a folder: text, or (context, text) for a contextual one."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: set[str | tuple[str, str]] = set()
    for _, _, message, _, context in extract_from_dir(ROOT / folder, method_map, options_map, KEYWORDS):
        singular = message if isinstance(message, str) else message[0]
        found.add((context, singular) if context else singular)
    return frozenset(found)


@pytest.mark.parametrize("language", TRANSLATED)
@pytest.mark.parametrize("folder", DOMAINS)
def test_every_marked_text_is_translated(folder: str, language: str) -> None:
    expected = marked(folder)
    assert expected, f"nothing marked for translation in {folder}"
    catalog = read_catalogue(ROOT / folder / "locale", language, DOMAINS[folder])
    assert catalog is not None, f"{folder} has no {language} catalogue"
    assert problems(catalog, expected) == []
    assert catalog.plural_forms == type(catalog)(locale=language).plural_forms


#: The domains the panel merges into one catalogue (the daemon and the simulator load their own).
PANEL_DOMAINS = {
    folder: domain for folder, domain in DOMAINS.items() if folder not in ("gatewayd", "simulator")
}


@pytest.mark.parametrize("language", TRANSLATED)
def test_a_text_the_panel_s_catalogues_share_has_one_translation(language: str) -> None:
    """The panel merges its catalogues and the first translation of a text wins: two plugins that
    translate one text differently make one of them wrong on every page ("Carrier" was "Operador", the
    chat operator, where four plugins said "Operadora"). A different sense takes its own msgctxt."""
    translations: dict[tuple[str | None, str], dict[str, object]] = {}
    for folder, domain in PANEL_DOMAINS.items():
        catalog = read_catalogue(ROOT / folder / "locale", language, domain)
        assert catalog is not None
        for message in catalog:
            if message.id and message.string:
                singular = message.id if isinstance(message.id, str) else message.id[0]
                translations.setdefault((message.context, singular), {})[domain] = message.string
    differing = {
        key: by_domain
        for key, by_domain in translations.items()
        if len({str(string) for string in by_domain.values()}) > 1
    }
    assert differing == {}


def test_problems_names_what_a_translator_left_out() -> None:
    from babel.messages.catalog import Catalog

    catalog = Catalog(locale="es")
    catalog.add("Hello %(name)s", "Hola %(nombre)s")
    catalog.add("Bye", "")
    catalog.add(("%(num)d message", "%(num)d messages"), ("un mensaje", "%(num)d mensajes"))
    catalog.add(("%(num)d file", "%(num)d files"), ("%(num)d fichero", "%(num)d ficheros"))
    found = problems(catalog, ["Missing"])
    assert any("'Hello %(name)s'" in problem and "placeholders" in problem for problem in found)
    assert any("'Bye' is not translated" in problem for problem in found)
    assert any("'%(num)d file' has 2 plural forms, the language has 3" in problem for problem in found)
    assert "es: 'Missing' is missing" in found
    assert not any("'%(num)d message'" in problem and "placeholders" in problem for problem in found)
    assert placeholders("%(a)s and %(b)d, not %c") == {"a", "b"}


def test_the_catalogues_load_with_plural_forms_and_contexts() -> None:
    sources = [(ROOT / folder / "locale", domain) for folder, domain in DOMAINS.items()]
    catalogue = load_catalogue(sources, LANGUAGES, "es")
    assert catalogue.gettext("es", "Sign out") == "Salir de la cuenta"
    assert catalogue.gettext("en", "Sign out") == "Sign out"
    assert catalogue.pgettext("es", "button", "Sign in") == "Entrar"
    assert catalogue.gettext("es", "Sign in") == "Iniciar sesión"
    left = "%(encoding)s · %(segments)s SMS · %(num)d character left"
    lefts = "%(encoding)s · %(segments)s SMS · %(num)d characters left"
    assert (
        catalogue.ngettext("es", left, lefts, 1, encoding="GSM", segments=1)
        == "GSM · 1 SMS · queda 1 carácter"
    )
    assert (
        catalogue.ngettext("es", left, lefts, 7, encoding="GSM", segments=1)
        == "GSM · 1 SMS · quedan 7 caracteres"
    )
    assert (
        catalogue.ngettext("en", left, lefts, 1, encoding="GSM", segments=1)
        == "GSM · 1 SMS · 1 character left"
    )
    assert catalogue.gettext("fr", "Sign out") == "Salir de la cuenta"  # unknown: the default language
    assert catalogue.gettext("es", "Never marked") == "Never marked"  # untranslated: the English text


def test_the_first_translation_of_a_text_wins(tmp_path: Path) -> None:
    header = 'msgid ""\nmsgstr ""\n"Language: es\\n"\n\n'
    for domain, entries in (("first", {"A": "", "B": "b1"}), ("second", {"A": "a2", "B": "b2", "C": "c2"})):
        folder = tmp_path / domain / "es" / "LC_MESSAGES"
        folder.mkdir(parents=True)
        body = "".join(f'msgid "{msgid}"\nmsgstr "{text}"\n\n' for msgid, text in entries.items())
        (folder / f"{domain}.po").write_text(header + body, encoding="utf-8")
    sources = [(tmp_path / "first", "first"), (tmp_path / "second", "second")]
    catalogue = load_catalogue(sources, ("es", "en"), "es")
    assert [catalogue.gettext("es", msgid) for msgid in "ABC"] == ["a2", "b1", "c2"]
    assert catalogue.gettext("en", "A") == "A"
