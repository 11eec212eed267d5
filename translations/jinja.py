"""Jinja2's i18n extension over the catalogues, for environments that serve many languages at once.

`install` puts newstyle ``gettext``/``_``, ``ngettext``, ``pgettext`` and ``npgettext`` into an
environment once; they read the translations from the template context (``translations=`` at render),
so concurrent renders in different languages share the environment safely. Newstyle means
``_("Hello %(name)s", name=user)`` formats (and escapes) the variables, and ``ngettext`` fills ``%(num)d``.
"""

from __future__ import annotations

import jinja2
from babel.support import NullTranslations

__all__ = ["CONTEXT_KEY", "install"]

#: The template context variable that holds the render's translations.
CONTEXT_KEY = "translations"
_NONE = NullTranslations()


def _translations(context: jinja2.runtime.Context) -> NullTranslations:
    found = context.get(CONTEXT_KEY)
    return found if isinstance(found, NullTranslations) else _NONE


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    return _translations(context).gettext(message)


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    return _translations(context).ngettext(singular, plural, n)


@jinja2.pass_context
def _pgettext(context: jinja2.runtime.Context, msgctxt: str, message: str) -> str:
    return str(_translations(context).pgettext(msgctxt, message))


@jinja2.pass_context
def _npgettext(context: jinja2.runtime.Context, msgctxt: str, singular: str, plural: str, n: int) -> str:
    return str(_translations(context).npgettext(msgctxt, singular, plural, n))


def install(environment: jinja2.Environment) -> None:
    """Add the i18n extension to ``environment`` with callables that follow each render's language."""
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True, pgettext=_pgettext, npgettext=_npgettext
    )
