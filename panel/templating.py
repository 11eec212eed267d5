"""One Jinja2 environment over the core templates and every plugin's, with the layout's context.

Texts go through Jinja2's i18n extension (``_()``, ``ngettext``, ``pgettext``, ``{% trans %}``; newstyle,
see `translations.jinja`), in the request's language; numbers through the filters ``number`` (a count),
``money`` and ``percent``, written as that language writes them (Babel): 12,345 / €7.00 / 80.0% in
English, 12.345 / 7,00 € / 80,0 % in Spanish. Exports and APIs keep plain numbers; only pages use these."""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from babel.numbers import NumberPattern, format_currency, format_decimal, format_percent, get_group_symbol
from markupsafe import Markup
from starlette.requests import Request
from starlette.templating import Jinja2Templates

import translations.jinja
from panel.i18n import LANGUAGE_NAMES, LANGUAGES, PRESENCE_LABELS, ROLE_LABELS, format_datetime
from panel.menu import menu_for
from panel.runtime import runtime
from panel.types import Plugin
from panel.web import CSRF_FIELD, csrf_token, current_user, language

CORE_TEMPLATES = Path(__file__).parent / "templates"
CORE_STATIC = Path(__file__).parent / "static"
#: Unicode's explicit embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069). A name or a text
#: holding one turns around what the page prints after it: an API key's name reversed the sentence
#: announcing it, and an audit record could be made to read as another. Pages print each as U+FFFD (what
#: is stored keeps it); the implicit marks (U+200E, U+200F) that right-to-left text needs stay.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)], "\ufffd")


def _layout_context(request: Request) -> dict[str, Any]:
    state = runtime(request)
    user = current_user(request)
    lang = language(request)
    return {
        "user": user,
        "csrf_token": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "lang": lang,
        "languages": LANGUAGES,
        "language_names": LANGUAGE_NAMES,
        "role_labels": ROLE_LABELS,
        "presence_labels": PRESENCE_LABELS,
        translations.jinja.CONTEXT_KEY: state.catalog.translations(lang),
        "timezone": user.timezone if user else state.settings.default_timezone,
        "menu": menu_for(user, state.menu),
        "current_path": request.url.path,
    }


@jinja2.pass_context
def _localtime_filter(
    context: jinja2.runtime.Context, value: datetime | None, style: str = "datetime"
) -> str:
    return format_datetime(value, str(context.get("timezone", "UTC")), style)


@functools.cache
def _locale(lang: str) -> Locale:
    return Locale.parse(lang)


def format_count(value: int, lang: str) -> str:
    """A count with the language's grouping: 12,345 in English, 12.345 in Spanish."""
    return format_decimal(value, locale=_locale(lang))


def format_amount(minor: int, currency: str, lang: str) -> str:
    """An amount kept in minor units (hundredths, as the billing stores it: 700 is 7.00) in ``currency``,
    as the language writes money: €7.00 in English, 7,00 € in Spanish. Exact (Decimal, never float);
    at least the currency's usual decimals, and none of the cents dropped for a currency that has fewer.
    Exports write the plain amount (``routing.premium.format_money``)."""
    amount = Decimal(minor).scaleb(-2)
    return format_currency(amount, currency, locale=_locale(lang), decimal_quantization=False)


@functools.cache
def _percent_pattern(lang: str, decimals: int) -> NumberPattern:
    pattern: NumberPattern = copy.copy(_locale(lang).percent_formats[None])
    pattern.frac_prec = (decimals, decimals)
    return pattern


def format_percentage(value: float, lang: str, decimals: int = 1) -> str:
    """A percentage (0 to 100, as the figures give it) in the language's pattern with ``decimals``
    decimals: 80.0% in English, 80,0 % in Spanish."""
    return format_percent(Decimal(str(value)).scaleb(-2), _percent_pattern(lang, decimals), _locale(lang))


@jinja2.pass_context
def _group_symbol(context: jinja2.runtime.Context) -> str:
    """The separator ``number`` puts between groups of three digits, for a script that updates counts on
    the page (they come as plain numbers from the JSON)."""
    return get_group_symbol(locale=_locale(str(context["lang"])))


@jinja2.pass_context
def _number_filter(context: jinja2.runtime.Context, value: int) -> str:
    return format_count(value, str(context["lang"]))


@jinja2.pass_context
def _money_filter(context: jinja2.runtime.Context, minor: int, currency: str) -> str:
    return format_amount(minor, currency, str(context["lang"]))


@jinja2.pass_context
def _percent_filter(context: jinja2.runtime.Context, value: float, decimals: int = 1) -> str:
    return format_percentage(value, str(context["lang"]), decimals)


def _without_bidi_controls(value: object) -> object:
    """Every value a template prints (Jinja2's ``finalize``), its bidi controls made visible."""
    if not isinstance(value, str):
        return value
    cleaned = value.translate(_BIDI_CONTROLS)
    if cleaned is value or cleaned == value:
        return value
    return Markup(cleaned) if isinstance(value, Markup) else cleaned


def static_urls(directories: dict[str, Path]) -> Callable[[str, str], str]:
    """``static_url(plugin, path)`` for templates: the file's URL with a digest of its content, so that
    a browser that cached a panel's scripts fetches them again once they change (an upgrade) instead of
    running an old panel.js beside a new monitor.js. A file that is not there gets a plain URL."""

    def static_url(plugin: str, path: str) -> str:
        relative = path.lstrip("/")
        url = f"/static/{plugin}/{relative}"
        directory = directories.get(plugin)
        if directory is None:
            return url
        try:
            stat = (directory / relative).stat()
        except OSError:
            return url
        return f"{url}?v={_digest(directory / relative, stat.st_mtime_ns, stat.st_size)}"

    return static_url


@functools.lru_cache(maxsize=256)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    """The first 12 hex digits of the file's SHA-256; read again only when its time or size changed."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def build_templates(plugins: Sequence[Plugin]) -> Jinja2Templates:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(CORE_TEMPLATES)]
    loaders.extend(
        jinja2.FileSystemLoader(plugin.templates) for plugin in plugins if plugin.templates is not None
    )
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_without_bidi_controls,
    )
    # The request's language comes with each render (`_layout_context`), not with the environment.
    translations.jinja.install(environment)
    environment.filters["localtime"] = _localtime_filter
    environment.filters["number"] = _number_filter
    environment.filters["money"] = _money_filter
    environment.filters["percent"] = _percent_filter
    directories = {"panel": CORE_STATIC}
    directories.update({plugin.name: plugin.static for plugin in plugins if plugin.static is not None})
    environment.globals["static_url"] = static_urls(directories)
    environment.globals["group_symbol"] = _group_symbol
    return Jinja2Templates(env=environment, context_processors=[_layout_context])
