"""The manual's message variables and a safe template renderer.

Variables (product manual, section 2): ``mensaje`` (the subscriber's text), ``host`` (the premium
short code), ``operador`` (the subscriber's carrier), ``telefono`` (the MSISDN), ``hora`` (time of
reception, hh:mm:ss, 24 h), ``fecha`` (date of reception, dd/mm/yyyy), ``pais`` (ISO country code).

``render_template`` replaces ``{name}`` placeholders by plain string substitution. It never calls
``str.format`` or evaluates anything, so a template or a subscriber's message cannot reach object
attributes ('{mensaje.__class__}') or other variables: values are inserted as they are and never
scanned again. Unknown placeholders stay as written; ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, tzinfo
from functools import lru_cache

VARIABLE_NAMES = ("mensaje", "host", "operador", "telefono", "hora", "fecha", "pais")

_TOKEN = re.compile(r"\{\{|\}\}|\{(\w+)\}")


def message_variables(
    text: str,
    short_code: str,
    carrier: str,
    msisdn: str,
    received_at: datetime,
    tz: tzinfo,
    country: str | None,
) -> dict[str, str]:
    """The variables of one received message; times are shown in ``tz`` (the service's time zone)."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware; a naive time has no defined local hour")
    hora, fecha = _clock(received_at, tz)
    return {
        "mensaje": text,
        "host": short_code,
        "operador": carrier,
        "telefono": msisdn,
        "hora": hora,
        "fecha": fecha,
        "pais": (country or "").upper(),
    }


@lru_cache(maxsize=64)  # the pushes of one batch share their time: formatted once
def _clock(received_at: datetime, tz: tzinfo) -> tuple[str, str]:
    local = received_at.astimezone(tz)
    return local.strftime("%H:%M:%S"), local.strftime("%d/%m/%Y")


@lru_cache(maxsize=1024)  # the same few names in every MT of a batch; bounded: templates are input
def _placeholder_key(name: str) -> str:
    """Placeholders match without regard to case or accents: '{Teléfono}' is '{telefono}'."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def render_template(template: str, variables: Mapping[str, str]) -> str:
    """``template`` with ``{name}`` replaced by ``variables[name]``; see the module notes for the rules."""
    if "{" not in template and "}" not in template:
        return template  # nothing to replace (most pushes): no lookup, no scan
    lookup = {_placeholder_key(name): value for name, value in variables.items()}

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = lookup.get(_placeholder_key(match.group(1)))
        return token if value is None else value

    return _TOKEN.sub(substitute, template)
