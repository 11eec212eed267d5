"""The panel's languages and texts: gettext catalogues (``panel/locale/``, one ``.po`` per language),
merged at start with the catalogue each plugin brings (`Plugin.locale`), and its dates and time zones.

The code and the templates are written in English (``_("Sign out")``); ``docs/I18N.md`` says how the
catalogues are extracted, updated and translated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from gatewayd.store.accounts import Presence, Role
from panel.errors import PluginError
from translations import N_, SOURCE_LANGUAGE, Catalogue, load_catalogue, placeholder_problems, read_catalogue
from translations import negotiate_language as _negotiate

__all__ = [
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "LOCALE_DIR",
    "PRESENCE_LABELS",
    "ROLE_LABELS",
    "Catalogue",
    "build_catalogue",
    "format_datetime",
    "is_valid_timezone",
    "negotiate_language",
    "timezone_choices",
    "zone_or_utc",
]

#: The languages of the panel, its messages and every plugin's.
LANGUAGES = ("es", "en")
#: Each language by its own name, as the language menus show it (not translated).
LANGUAGE_NAMES = MappingProxyType({"es": "Español", "en": "English"})
#: The panel's own catalogue: ``panel/locale/<language>/LC_MESSAGES/panel.po``.
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "panel"

ROLE_LABELS = MappingProxyType(
    {
        Role.ADMIN.value: N_("Administrator"),
        Role.MASTER.value: N_("Master"),
        Role.OPERATOR.value: N_("Operator"),
    }
)
PRESENCE_LABELS = MappingProxyType(
    {
        Presence.ONLINE.value: N_("Online"),
        Presence.PAUSED.value: N_("Paused"),
        Presence.OFFLINE.value: N_("Offline"),
    }
)

DATE_FORMATS = {
    "datetime": "%d/%m/%Y %H:%M:%S",
    "date": "%d/%m/%Y",
    "time": "%H:%M:%S",
    "short": "%d/%m %H:%M",
}


class BringsCatalogue(Protocol):
    """What the catalogue reads of a plugin: its name (the gettext domain) and its ``locale`` folder."""

    @property
    def name(self) -> str: ...

    @property
    def locale(self) -> Path | None: ...


def build_catalogue(plugins: Iterable[BringsCatalogue], default_language: str = "es") -> Catalogue:
    """The panel's catalogue first, then each plugin's (in the order given): where two translate one
    English text, the first wins. A plugin's catalogue must exist for every language but English and
    keep the placeholders of each text (``%(name)s``), or the panel does not start."""
    sources: list[tuple[Path, str]] = [(LOCALE_DIR, DOMAIN)]
    for plugin in plugins:
        if plugin.locale is not None:
            check_plugin_catalogue(plugin.name, plugin.locale, LANGUAGES)
            sources.append((plugin.locale, plugin.name))
    return load_catalogue(sources, LANGUAGES, default_language)


def check_plugin_catalogue(name: str, locale: Path, languages: Sequence[str]) -> None:
    for language in languages:
        if language == SOURCE_LANGUAGE:
            continue
        catalog = read_catalogue(locale, language, name)
        if catalog is None:
            raise PluginError(name, f"no {language!r} catalogue: {locale}/{language}/LC_MESSAGES/{name}.po")
        for problem in placeholder_problems(catalog):
            raise PluginError(name, problem)


def negotiate_language(accept_language: str | None, default: str) -> str:
    """The best of the panel's languages for an Accept-Language header (q-values honoured)."""
    return _negotiate(accept_language, LANGUAGES, default)


def zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_valid_timezone(name: str) -> bool:
    return name in available_timezones()


def timezone_choices() -> list[str]:
    """The time zones the forms offer, by name ("Area/City" and UTC)."""
    return sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC")


def format_datetime(value: datetime | None, timezone: str, style: str = "datetime") -> str:
    """A UTC instant shown in the reader's zone: dd/mm/yyyy HH:MM:SS (24 h) as in the manual."""
    if value is None:
        return ""
    if value.tzinfo is None:
        raise ValueError("naive datetime cannot be shown in a time zone")
    return value.astimezone(zone_or_utc(timezone)).strftime(DATE_FORMATS.get(style, style))
