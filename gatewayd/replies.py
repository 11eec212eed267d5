"""The gateway's own answers to reserved keywords (opt-out, opt-in, help), in the country's language.

The texts are English here and translated in ``gatewayd/locale/<language>/LC_MESSAGES/gatewayd.po``, the
same catalogue system as the panel's and the simulator's (docs/I18N.md). The country of the MO (its
carrier's, `CarrierConfig.country`) chooses the language. Each answer is a template with the manual's
variables (``{host}``), rendered by the outbox like every MT's text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from routing.keywords import KeywordKind
from routing.premium import StepAction
from translations import N_, Catalogue, load_catalogue

#: The languages the daemon answers in; English where the country speaks no other of them.
LANGUAGES = ("es", "en")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "gatewayd"

# Each text is one SMS: in the GSM 03.38 alphabet (no á, í, ó, ú) and at most 160 characters with a
# 6-digit short code for %(host)s, or it costs two (a unit test checks both for every language).
_TEXTS = {
    # TRANSLATORS: one SMS: no accented letters (á í ó ú), at most 160 characters with a 6-digit %(host)s.
    KeywordKind.OPT_OUT: N_(
        "You have unsubscribed from %(host)s. You will get no more messages. "
        "Text START to %(host)s to come back."
    ),
    # TRANSLATORS: one SMS: no accented letters (á í ó ú), at most 160 characters with a 6-digit %(host)s.
    KeywordKind.OPT_IN: N_("You are subscribed to %(host)s. Text STOP to %(host)s to unsubscribe."),
    # TRANSLATORS: one SMS: no accented letters (á í ó ú), at most 160 characters with a 6-digit %(host)s.
    KeywordKind.HELP: N_("Chat service %(host)s. Text STOP to %(host)s to unsubscribe."),
}

# The spend steps' notices when ``[spend]`` gives no text of its own (docs/COMPLIANCE.md).
_STEP_TEXTS = {
    # TRANSLATORS: one SMS: no accented letters, at most 160 characters with a 6-digit %(host)s.
    StepAction.NOTIFY: N_("Reminder: you have spent %(spent)s %(currency)s this month on %(host)s."),
    # TRANSLATORS: one SMS: no accented letters, at most 160 characters. The client must answer the
    # country's acceptance keyword (SI in Spanish, YES in English) to go on.
    StepAction.CONFIRM: N_(
        "You have spent %(spent)s %(currency)s this month on %(host)s. "
        "The chat is paused: reply YES to go on."
    ),
    # TRANSLATORS: one SMS: no accented letters, at most 160 characters with a 6-digit %(host)s.
    StepAction.CAP: N_(
        "You have reached this month's limit of %(spent)s %(currency)s on %(host)s. "
        "The chat stops until next month."
    ),
}
_SPANISH_SPEAKING = frozenset({"ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "UY", "PY", "BO", "CR", "GT"})


@cache
def catalogue() -> Catalogue:
    return load_catalogue([(LOCALE_DIR, DOMAIN)], LANGUAGES, "en")


def language_for(country: str) -> str:
    return "es" if country.upper() in _SPANISH_SPEAKING else "en"


def reply_template(kind: KeywordKind, country: str) -> str:
    """The confirmation for a reserved keyword, in the country's language: a template the outbox
    renders. Translators write ``%(host)s`` (gettext's python-format, checked by Babel); it becomes the
    manual's ``{host}`` variable here, the short code the keyword came to."""
    return catalogue().gettext(language_for(country), _TEXTS[kind], host="{host}")


def step_template(action: StepAction, country: str) -> str:
    """The default notice of a spend step, in the country's language: a template with ``{spent}``,
    ``{currency}`` and ``{host}``, which the outbox renders."""
    return catalogue().gettext(
        language_for(country), _STEP_TEXTS[action], host="{host}", spent="{spent}", currency="{currency}"
    )
