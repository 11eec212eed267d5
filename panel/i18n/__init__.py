"""Spanish and English messages: plain dictionaries merged from the core and every plugin."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from panel.errors import PluginError
from panel.i18n.messages_en import MESSAGES as CORE_EN
from panel.i18n.messages_es import MESSAGES as CORE_ES

#: The languages of the panel, its messages and every plugin's.
LANGUAGES = ("es", "en")

CORE_MESSAGES: Mapping[str, Mapping[str, str]] = {"es": CORE_ES, "en": CORE_EN}

DATE_FORMATS = {
    "datetime": "%d/%m/%Y %H:%M:%S",
    "date": "%d/%m/%Y",
    "time": "%H:%M:%S",
    "short": "%d/%m %H:%M",
}


def missing_keys(messages: Mapping[str, Mapping[str, str]]) -> dict[str, set[str]]:
    """Per language, the keys another language has and this one lacks."""
    every_key = set().union(*(set(catalog) for catalog in messages.values())) if messages else set()
    return {lang: every_key - set(messages.get(lang, {})) for lang in LANGUAGES}


class DeclaresMessages(Protocol):
    """What the catalogue reads of a plugin: its name and its messages (language -> key -> text)."""

    @property
    def name(self) -> str: ...

    @property
    def messages(self) -> Mapping[str, Mapping[str, str]]: ...


class Catalog:
    """Messages for every supported language; a key missing everywhere renders as the key itself."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]], default_language: str = "es") -> None:
        if default_language not in LANGUAGES:
            raise ValueError(f"unsupported default language {default_language!r}")
        self._messages = MappingProxyType({lang: dict(messages.get(lang, {})) for lang in LANGUAGES})
        self.default_language = default_language

    @classmethod
    def build(cls, plugins: Iterable[DeclaresMessages], default_language: str = "es") -> Catalog:
        merged: dict[str, dict[str, str]] = {lang: dict(CORE_MESSAGES[lang]) for lang in LANGUAGES}
        owners: dict[str, str] = dict.fromkeys(CORE_MESSAGES["es"], "panel")
        for plugin in plugins:
            for lang, keys in missing_keys(plugin.messages).items():
                if keys:
                    raise PluginError(plugin.name, f"messages lack a {lang!r} text for {sorted(keys)}")
            for key in plugin.messages.get("es", {}):
                if key in owners:
                    first = owners[key]
                    raise PluginError(plugin.name, f"message key {key!r} is already defined by {first!r}")
                owners[key] = plugin.name
            for lang in LANGUAGES:
                merged[lang].update(plugin.messages.get(lang, {}))
        return cls(merged, default_language)

    def gettext(self, language: str, key: str, /, **params: object) -> str:
        catalog = self._messages.get(language) or self._messages[self.default_language]
        text = catalog.get(key) or self._messages[self.default_language].get(key) or key
        return text.format(**params) if params else text

    def has(self, key: str) -> bool:
        return all(key in catalog for catalog in self._messages.values())


def negotiate_language(accept_language: str | None, default: str) -> str:
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
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else default


def zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_valid_timezone(name: str) -> bool:
    return name in available_timezones()


def format_datetime(value: datetime | None, timezone: str, style: str = "datetime") -> str:
    """A UTC instant shown in the reader's zone: dd/mm/yyyy HH:MM:SS (24 h) as in the manual."""
    if value is None:
        return ""
    if value.tzinfo is None:
        raise ValueError("naive datetime cannot be shown in a time zone")
    return value.astimezone(zone_or_utc(timezone)).strftime(DATE_FORMATS.get(style, style))
