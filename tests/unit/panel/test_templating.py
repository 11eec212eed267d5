"""What every page prints goes through one filter: bidi controls a name or a text holds cannot turn
around what the page prints after them."""

from __future__ import annotations

import re
from pathlib import Path

from markupsafe import Markup

from panel.templating import CORE_STATIC, build_templates, static_urls


def render(source: str, **values: object) -> str:
    return build_templates([]).env.from_string(source).render(**values)


def test_bidi_overrides_and_isolates_print_as_replacement_characters() -> None:
    name = "Pepe \u202e<b>x</b>"  # RIGHT-TO-LEFT OVERRIDE: the rest of the line would read backwards
    printed = render("{{ name }} creada. Cópiela ahora.", name=name)
    assert printed == "Pepe \ufffd&lt;b&gt;x&lt;/b&gt; creada. Cópiela ahora."
    every = "".join(chr(code) for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert render("{{ text }}", text=every) == "\ufffd" * 9


def test_markup_stays_markup_and_right_to_left_text_keeps_its_marks() -> None:
    assert render("{{ html }}", html=Markup("<em>\u2067x\u2069</em>")) == "<em>\ufffdx\ufffd</em>"
    hebrew = "\u05e9\u05dc\u05d5\u05dd \u200f(1)"  # RIGHT-TO-LEFT MARK: needed, and harmless
    assert render("{{ text }}", text=hebrew) == hebrew
    assert render("{{ number }} {{ nothing }}", number=3, nothing=None) == "3 None"


def test_counts_money_and_percentages_in_the_readers_language() -> None:
    source = (
        "{{ n | number }} · {{ minor | money(currency) }} · {{ share | percent }} · {{ share | percent(0) }}"
    )
    values = {"n": 1234567, "minor": 123456789, "currency": "EUR", "share": 80}
    assert render(source, lang="es", **values) == "1.234.567 · 1.234.567,89\xa0€ · 80,0\xa0% · 80\xa0%"
    assert render(source, lang="en", **values) == "1,234,567 · €1,234,567.89 · 80.0% · 80%"


def test_money_is_exact_and_keeps_its_cents() -> None:
    assert render("{{ 1 | money('EUR') }} {{ -250 | money('GBP') }}", lang="en") == "€0.01 -£2.50"
    # minor units are hundredths whatever the currency: a yen amount with cents keeps them
    assert render("{{ 125 | money('JPY') }} {{ 300 | money('JPY') }}", lang="en") == "¥1.25 ¥3"
    assert render("{{ group_symbol() }}", lang="es") == "."


def test_static_urls_carry_a_digest_of_the_file_that_changes_with_it(tmp_path: Path) -> None:
    """A browser that cached a script fetches it again once an upgrade changed it."""
    script = tmp_path / "notes.js"
    script.write_text("var a = 1;\n")
    static_url = static_urls({"notes": tmp_path, "panel": CORE_STATIC})
    first = static_url("notes", "notes.js")
    assert re.fullmatch(r"/static/notes/notes\.js\?v=[0-9a-f]{12}", first)
    assert static_url("notes", "/notes.js") == first  # the same file, the same URL
    script.write_text("var a = 2; // a new release\n")
    assert static_url("notes", "notes.js") not in (first, "/static/notes/notes.js")
    assert static_url("notes", "missing.js") == "/static/notes/missing.js"
    assert static_url("unknown", "x.js") == "/static/unknown/x.js"
    page = render("<script src=\"{{ static_url('panel', 'panel.js') }}\"></script>")
    assert re.search(r'src="/static/panel/panel\.js\?v=[0-9a-f]{12}"', page)
