"""The manual's message variables and safe template rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.variables import VARIABLE_NAMES, message_variables, render_template

MADRID = ZoneInfo("Europe/Madrid")


def variables(text: str = "alias hola guapa", received_at: datetime | None = None) -> dict[str, str]:
    when = received_at or datetime(2026, 7, 4, 21, 5, 9, tzinfo=UTC)
    return message_variables(text, "997745", "movistar", "+34600111222", when, MADRID, "es")


def test_message_variables_follow_the_manual() -> None:
    assert variables() == {
        "mensaje": "alias hola guapa",
        "host": "997745",
        "operador": "movistar",
        "telefono": "+34600111222",
        "hora": "23:05:09",  # 21:05:09 UTC is 23:05:09 in Madrid (summer time), 24-hour clock
        "fecha": "04/07/2026",
        "pais": "ES",
    }
    assert tuple(variables()) == VARIABLE_NAMES


def test_date_and_time_are_local_to_the_service() -> None:
    new_year_utc = datetime(2025, 12, 31, 23, 30, 0, tzinfo=UTC)
    local = variables(received_at=new_year_utc)
    assert (local["fecha"], local["hora"]) == ("01/01/2026", "00:30:00")  # Madrid is UTC+1 in winter
    other_offset = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert variables(received_at=other_offset)["hora"] == "09:04:05"


def test_country_may_be_unknown() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert message_variables("x", "1", "c", "+79123456789", when, UTC, None)["pais"] == ""


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        variables(received_at=datetime(2026, 1, 1, 12, 0, 0))


def test_render_template_substitutes_known_placeholders() -> None:
    rendered = render_template(
        "Hola {telefono}, recibimos '{mensaje}' en el {host} a las {hora} ({pais})", variables()
    )
    assert rendered == "Hola +34600111222, recibimos 'alias hola guapa' en el 997745 a las 23:05:09 (ES)"


def test_render_template_accepts_case_and_accent_variants() -> None:
    assert render_template("{Teléfono} {PAÍS} {Operador}", variables()) == "+34600111222 ES movistar"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{desconocida} {host}", "{desconocida} 997745"),  # unknown placeholders stay as written
        ("{{host}} = {host}", "{host} = 997745"),  # doubled braces are literal
        ("{{}}", "{}"),
        ("{ host }", "{ host }"),
        ("{host", "{host"),
        ("host}", "host}"),
        ("{mensaje.__class__}", "{mensaje.__class__}"),  # no attribute access
        ("{mensaje[0]}", "{mensaje[0]}"),  # no indexing
        ("{0}", "{0}"),
        ("{}", "{}"),
        ("", ""),
    ],
)
def test_render_template_is_not_str_format(template: str, expected: str) -> None:
    assert render_template(template, variables()) == expected


def test_values_are_never_rescanned() -> None:
    sneaky = variables("{telefono} {{host}} {mensaje}")
    assert render_template("[{mensaje}]", sneaky) == "[{telefono} {{host}} {mensaje}]"


@given(st.text(max_size=60))
def test_text_without_braces_is_unchanged(text: str) -> None:
    plain = text.replace("{", "").replace("}", "")
    assert render_template(plain, variables()) == plain


@given(st.text(max_size=40))
def test_any_message_is_inserted_verbatim(message: str) -> None:
    assert render_template("<{mensaje}>", variables(message)) == f"<{message}>"
