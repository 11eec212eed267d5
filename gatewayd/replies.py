"""The gateway's own answers to reserved keywords (opt-out, opt-in, help), per language.

Templates with the manual's variables (``{host}``), rendered by the outbox like every MT's text.
Written in the GSM 03.38 alphabet (no á, í, ó, ú) so each fits one 160-character SMS.
"""

from __future__ import annotations

from routing.keywords import KeywordKind

_SPANISH = {
    KeywordKind.OPT_OUT: "Te has dado de baja del servicio {host}. No recibiras mas mensajes. "
    "Para volver, envia ALTA al {host}.",
    KeywordKind.OPT_IN: "Te has dado de alta en el servicio {host}. "
    "Para darte de baja, envia BAJA al {host}.",
    KeywordKind.HELP: "Servicio de chat {host}. Para darte de baja, envia BAJA al {host}.",
}
_ENGLISH = {
    KeywordKind.OPT_OUT: "You have unsubscribed from {host}. You will get no more messages. "
    "Text START to {host} to come back.",
    KeywordKind.OPT_IN: "You are subscribed to {host}. Text STOP to {host} to unsubscribe.",
    KeywordKind.HELP: "Chat service {host}. Text STOP to {host} to unsubscribe.",
}
_SPANISH_SPEAKING = frozenset({"ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "UY", "PY", "BO", "CR", "GT"})


def reply_template(kind: KeywordKind, country: str) -> str:
    """The confirmation for a reserved keyword, in the country's language: a template the outbox
    renders (``{host}`` is the short code the keyword came to)."""
    texts = _SPANISH if country.upper() in _SPANISH_SPEAKING else _ENGLISH
    return texts[kind]
