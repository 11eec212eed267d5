"""The audit trail's viewer (/admin/audit): who may open it, its filters (dates in the reader's time
zone), keyset pages, refusals of bad filters, the CSV export (formula cells escaped, BOM, filtered,
itself recorded) and the check of the chain on demand, which shows an edited record."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from sqlalchemy import select, update

from gatewayd.store.accounts import Account
from gatewayd.store.audit import (
    ACTION_LENGTH,
    ACTOR_LENGTH,
    SOURCE_LENGTH,
    SUBJECT_LENGTH,
    AuditEntry,
    AuditRecord,
    append_audit,
)
from panel.auth.accounts import set_permissions
from panel.auth.permissions import PANEL_ACCESS
from plugins.audit.permissions import AUDIT_VIEW

from .conftest import HTML, PanelClient, login, page_csrf

_SEQ = re.compile(r'data-seq="(\d+)"')
_LINK = re.compile(r'<a href="([^"]*)" rel="(first|prev|next)">')
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def seed(client: PanelClient, entries: list[tuple[AuditEntry, datetime]]) -> None:
    async with client.runtime.sessionmaker() as session, session.begin():
        for entry, moment in entries:
            await append_audit(session, entry, now=moment)


def seqs(html: str) -> list[int]:
    return [int(found) for found in _SEQ.findall(html)]


def links(html: str) -> dict[str, str]:
    return {rel: href.replace("&amp;", "&") for href, rel in _LINK.findall(html)}


async def records(client: PanelClient) -> list[AuditRecord]:
    async with client.runtime.readers() as session:
        return list((await session.scalars(select(AuditRecord).order_by(AuditRecord.seq))).all())


async def grant_audit_view(client: PanelClient, username: str) -> None:
    async with client.runtime.sessionmaker() as session, session.begin():
        account = (await session.scalars(select(Account).where(Account.username == username))).one()
        await set_permissions(account, client.runtime.permissions, [*account.permissions, AUDIT_VIEW])


async def test_only_holders_of_audit_view_may_open_it(client: PanelClient) -> None:
    for who, status in (("oscar", 403), ("marta", 403), ("ana", 200)):
        browser = client.another_browser()
        await login(browser, who)
        for path in ("/admin/audit", "/admin/audit.csv"):
            assert (await browser.get(path, headers=HTML)).status_code == status, (who, path)
        menu = await browser.get("/profile", headers=HTML)
        assert ('href="/admin/audit"' in menu.text) is (status == 200), who
    # A master given the power opens it.
    registry = client.runtime.permissions  # the app's own: every plugin's powers
    async with client.runtime.sessionmaker() as session, session.begin():
        marta = (await session.scalars(select(Account).where(Account.username == "marta"))).one()
        await set_permissions(marta, registry, [*marta.permissions, AUDIT_VIEW])
        assert PANEL_ACCESS in marta.permissions
    await login(client, "marta")
    page = await client.get("/admin/audit", headers=HTML)
    assert page.status_code == 200 and "Audit trail" in page.text  # marta reads English


async def test_filters_and_the_dates_in_the_readers_time_zone(client: PanelClient) -> None:
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2 March 00:30 in Madrid, ana's time zone
    await seed(
        client,
        [
            (AuditEntry("client.ban", "Marta", 2, "10.0.0.9", "client:CABC", {"reason": "Ñandú 100%"}), BASE),
            (AuditEntry("account.lock", "ana", 1, "10.0.0.8", "account:12", {"reason": "left"}), BASE),
            (AuditEntry("account.lock", "ana", 1, "10.0.0.8", "account:1", {"reason": "other"}), late),
            (
                AuditEntry(
                    "account.pools",
                    "cli",
                    None,
                    "cli",
                    "account:12",
                    {"before": {"pools": ["a"]}, "after": {"pools": ["a", "b"]}},
                ),
                late,
            ),
        ],
    )
    await login(client, "ana")
    ana_login = (await records(client))[-1].seq
    cases = {
        "actor=marta": [1],
        "action=account.lock": [3, 2],
        "subject=account:12": [4, 2],
        "subject=account": [ana_login, 4, 3, 2],
        "source=cli": [4],
        "from=2026-03-02&to=2026-03-02": [4, 3],
        "from=2026-03-01&to=2026-03-01": [2, 1],
        "q=%C3%91AND%C3%BA": [1],  # "ÑANDú": A-Z in any case, other letters as typed
        "q=100%25": [1],  # a literal %, not a wildcard
        "q=left&action=account.lock": [2],
        "actor=nadie": [],
    }
    for query, expected in cases.items():
        page = await client.get(f"/admin/audit?{query}", headers=HTML)
        assert page.status_code == 200, query
        assert seqs(page.text) == expected, query
    page = await client.get("/admin/audit?source=cli", headers=HTML)
    assert "Grupos de operadores:</span> a \u2192 a, b" in page.text  # before -> after, readable
    assert "<option selected>account.lock</option>" not in page.text
    assert "<option>client.ban</option>" in page.text  # the actions present, to choose from
    empty = await client.get("/admin/audit?actor=nadie", headers=HTML)
    assert "Ningún registro coincide" in empty.text


async def test_bad_filters_are_refused_with_a_message(client: PanelClient) -> None:
    await login(client, "ana")
    refused = {
        "from=2026-13-01": "AAAA-MM-DD",
        "to=yesterday": "AAAA-MM-DD",
        "from=2026-03-02&to=2026-03-01": "posterior",
        "action=DROP%20TABLE": "No existe esa acción",
        "before=abc": "no es válida",
        "before=1&after=2": "no es válida",
        "after=99999999999999999999": "no es válida",
        "before=%C2%B2": "no es válida",  # "²": a digit to str.isdigit, not to int()
        "to=9999-12-31": "AAAA-MM-DD",  # its next day is past the last date Python knows
        "from=0001-01-01": "AAAA-MM-DD",
        f"actor={'x' * 65}": "demasiado largo",
    }
    for query, message in refused.items():
        page = await client.get(f"/admin/audit?{query}", headers=HTML)
        assert page.status_code == 400, query
        assert message in page.text, query
        export = await client.get(f"/admin/audit.csv?{query}")
        assert export.status_code == 400, query


async def test_pages_of_a_hundred_newest_first_keyed_on_the_number(client: PanelClient) -> None:
    entries = [
        (AuditEntry("mt.sent", "oscar", 3, "10.0.0.1", f"conversation:{n}", {"mt_ids": [n]}), BASE)
        for n in range(250)
    ]
    await seed(client, entries)
    await login(client, "ana")
    query = "action=mt.sent"
    first = await client.get(f"/admin/audit?{query}", headers=HTML)
    assert seqs(first.text) == list(range(250, 150, -1))
    assert set(links(first.text)) == {"next"}
    second = await client.get(links(first.text)["next"], headers=HTML)
    assert seqs(second.text) == list(range(150, 50, -1))
    assert set(links(second.text)) == {"first", "prev", "next"}
    third = await client.get(links(second.text)["next"], headers=HTML)
    assert seqs(third.text) == list(range(50, 0, -1))
    assert set(links(third.text)) == {"first", "prev"}
    back = await client.get(links(third.text)["prev"], headers=HTML)
    assert seqs(back.text) == list(range(150, 50, -1))
    assert all("action=mt.sent" in link for link in links(back.text).values())


async def test_the_csv_export_escapes_formulas_is_filtered_and_recorded(client: PanelClient) -> None:
    await seed(
        client,
        [
            (
                AuditEntry(
                    "client.details",
                    '=HYPERLINK("x")',
                    5,
                    "+34 1",
                    "@client:C1",
                    {"after": {"notes": "=1+1 ñ"}},
                ),
                BASE,
            ),
            (AuditEntry("client.details", "-ana", 5, "\tx", "\rclient:C2", {}), BASE),
            (AuditEntry("account.lock", "ana", 1, "10.0.0.1", "account:9", {}), BASE),
        ],
    )
    await login(client, "ana")
    response = await client.get("/admin/audit.csv?action=client.details")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="audit-')
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Número", "Hora", "Autor"]
    assert [row[0] for row in rows[1:]] == ["2", "1"]
    assert rows[2][1] == "2026-03-01 13:00:00"  # ana's time zone, Europe/Madrid
    assert rows[2][2:7] == ['\'=HYPERLINK("x")', "5", "'+34 1", "client.details", "'@client:C1"]
    assert rows[2][7] == '{"after": {"notes": "=1+1 ñ"}}'
    assert rows[1][2] == "'-ana" and rows[1][4] == "'\tx" and rows[1][6] == "'\rclient:C2"
    assert len(rows[1][8]) == 64  # the hash, to compare with the chain
    exported = (await records(client))[-1]
    assert (exported.action, exported.actor, exported.details) == (
        "audit.export",
        "ana",
        {"filters": {"action": "client.details"}},
    )


async def test_the_chain_is_checked_on_demand_and_an_edit_shows(client: PanelClient) -> None:
    await seed(
        client, [(AuditEntry("account.lock", "ana", 1, "cli", f"account:{n}", {}), BASE) for n in range(5)]
    )
    await login(client, "ana")
    page = await client.get("/admin/audit", headers=HTML)
    assert "cadena intacta" not in page.text  # not computed on every page
    token = await page_csrf(client, "/admin/audit")
    intact = await client.post("/admin/audit/verify", data={"csrf_token": token}, headers=HTML)
    assert intact.status_code == 200
    assert "6 registros, cadena intacta." in intact.text  # five, and ana's sign-in
    last = (await records(client))[-1]
    assert (last.action, last.details) == ("audit.verify", {"records": 6, "intact": True, "bad_seq": None})
    async with client.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(AuditRecord).where(AuditRecord.seq == 3).values(details={"edited": True})
        )
    broken = await client.post("/admin/audit/verify", data={"csrf_token": token}, headers=HTML)
    assert "2 registros, cadena rota en el n.º 3." in broken.text
    assert broken.text.count("data-seq=") == 8  # the page still lists the records


async def test_a_refused_filter_keeps_the_form_as_typed_with_the_error_beside_its_field(
    client: PanelClient,
) -> None:
    await login(client, "ana")  # ana reads Spanish
    typed = "actor=Marta&subject=account%3A12&source=cli&q=Ñandú&from=2026-03-02&to=2026-03-01"
    page = await client.get(f"/admin/audit?{typed}", headers=HTML)
    assert page.status_code == 400
    assert 'id="f-actor" name="actor" maxlength="64" value="Marta"' in page.text
    assert 'value="account:12"' in page.text and 'value="cli"' in page.text and 'value="Ñandú"' in page.text
    assert 'id="f-from" name="from" type="date" value="2026-03-02"' in page.text
    to_field = page.text.split('id="f-to"', 1)[1].split("</div>", 1)[0]
    assert 'value="2026-03-01" aria-invalid="true" aria-describedby="f-to-error"' in to_field
    assert 'id="f-to-error" role="alert">La fecha de inicio es posterior a la fecha de fin.</p>' in to_field
    # A date the browser's date input would blank is shown as typed, in a text input.
    bad_day = await client.get("/admin/audit?from=2026-13-01&actor=ana", headers=HTML)
    assert bad_day.status_code == 400
    from_field = bad_day.text.split('id="f-from"', 1)[1].split("</div>", 1)[0]
    assert 'type="text" value="2026-13-01" aria-invalid="true"' in from_field
    assert "Las fechas deben escribirse como AAAA-MM-DD." in from_field
    assert 'value="ana"' in bad_day.text
    # An action not in the list stays chosen; a bad page has no field: its message is on top.
    action = await client.get("/admin/audit?action=DROP%20TABLE", headers=HTML)
    assert "<option selected>DROP TABLE</option>" in action.text
    assert 'id="f-action-error" role="alert">No existe esa acción.</p>' in action.text
    page_asked = await client.get("/admin/audit?before=abc&actor=ana", headers=HTML)
    assert '<p class="flash error" role="alert">La página pedida no es válida.</p>' in page_asked.text
    assert 'value="ana"' in page_asked.text
    # In English for an English reader.
    await grant_audit_view(client, "marta")
    reader = client.another_browser()
    async with reader:
        await login(reader, "marta")
        english = await reader.get("/admin/audit?to=yesterday", headers=HTML)
    assert english.status_code == 400
    assert 'id="f-to-error" role="alert">Dates must be written as YYYY-MM-DD.</p>' in english.text
    assert 'type="text" value="yesterday"' in english.text


async def test_details_show_labels_and_times_in_the_readers_time_zone(client: PanelClient) -> None:
    details = {
        "mt_ids": [7],
        "kind": "push",
        "held_until": "2026-03-01T22:30:00+00:00",
        "sessions_ended": 2,
        "some_new_key": True,
    }
    changed = {
        "before": {"session_reset_at": None, "display_name": "Ana"},
        "after": {"session_reset_at": "2026-03-01T12:00:00+00:00", "display_name": "Ana B."},
    }
    await seed(
        client,
        [
            (AuditEntry("mt.sent", "oscar", 3, "10.0.0.1", "client:CABC", details), BASE),
            (AuditEntry("client.session_reset", "ana", 1, "10.0.0.8", "client:CABC", changed), BASE),
        ],
    )
    await login(client, "ana")  # Spanish, Europe/Madrid (UTC+1 in March)
    page = await client.get("/admin/audit?subject=client", headers=HTML)
    assert page.status_code == 200
    cells = page.text.split('class="details">')[1:]
    mt_sent, reset = cells[1], cells[0]  # newest first
    assert "Mensajes:</span> 7" in mt_sent and "Tipo:</span> push" in mt_sent
    assert "Retenido hasta:</span> 01/03/2026 23:30:00" in mt_sent  # 22:30 UTC
    assert "Sesiones cerradas:</span> 2" in mt_sent
    assert "Some new key:</span> Sí" in mt_sent  # an unknown key, readable
    assert "Reinicio de sesión:</span> \u2014 \u2192 01/03/2026 13:00:00" in reset
    assert "Nombre visible:</span> Ana \u2192 Ana B." in reset
    for key in ("mt_ids", "held_until", "sessions_ended", "some_new_key", "session_reset_at", "+00:00"):
        assert key not in mt_sent + reset, key
    # In English, in America/Bogota (UTC-5), for marta.
    await grant_audit_view(client, "marta")
    reader = client.another_browser()
    async with reader:
        await login(reader, "marta")
        english = await reader.get("/admin/audit?action=mt.sent", headers=HTML)
    assert "Held until:</span> 01/03/2026 17:30:00" in english.text
    assert "Some new key:</span> Yes" in english.text
    # What is stored does not change.
    stored = {record.action: record.details for record in await records(client)}
    assert stored["mt.sent"] == details and stored["client.session_reset"] == changed


async def test_a_refused_filter_shows_back_no_more_of_a_value_than_its_field_takes(
    client: PanelClient,
) -> None:
    await login(client, "ana")
    typed = {"actor": "a", "action": "b", "subject": "s", "source": "o", "from": "1", "to": "2", "q": "q"}
    query = "&".join(f"{name}={letter * 5000}" for name, letter in typed.items())
    page = await client.get(f"/admin/audit?{query}", headers=HTML)
    assert page.status_code == 400 and "demasiado largo" in page.text
    limits = {"actor": ACTOR_LENGTH, "action": ACTION_LENGTH, "subject": SUBJECT_LENGTH}
    limits |= {"source": SOURCE_LENGTH, "from": 10, "to": 10, "q": 200}
    for name, limit in limits.items():
        letter = typed[name]
        assert letter * limit in page.text, name
        assert letter * (limit + 1) not in page.text, name
    assert len(page.text) < 20_000


async def test_the_details_of_an_export_name_its_filters_as_the_form_does(client: PanelClient) -> None:
    await login(client, "ana")  # Spanish
    query = "actor=ana&action=account.lock&subject=account&source=cli&from=2026-03-01&to=2026-03-02&q=x"
    assert (await client.get(f"/admin/audit.csv?{query}")).status_code == 200
    page = await client.get("/admin/audit?action=audit.export", headers=HTML)
    details = page.text.split('class="details">')[1].split("</td>", 1)[0]
    words = (
        "Usuario: ana; Acción: account.lock; Objeto: account; Origen: cli; Desde: 2026-03-01; "
        "Hasta: 2026-03-02; Texto en los detalles: x"
    )
    assert f"Filtros:</span> {words}" in details
    for raw in ("Actor", "Q:", "Subject", "Source", "From", "To:"):
        assert raw not in details, raw


async def test_the_text_search_says_it_reads_the_record_as_stored(client: PanelClient) -> None:
    await login(client, "ana")  # Spanish
    page = await client.get("/admin/audit", headers=HTML)
    q_field = page.text.split('id="f-q"', 1)[1].split("</div>", 1)[0]
    assert 'autocomplete="off" aria-describedby="f-q-hint">' in q_field
    hint = "Busca en el registro tal como se guardó: nombres de clave en inglés, horas en UTC."
    assert f'<p class="field-hint" id="f-q-hint">{hint}</p>' in q_field
    # refused: the message first, then the hint
    refused = await client.get(f"/admin/audit?q={'q' * 201}", headers=HTML)
    q_field = refused.text.split('id="f-q"', 1)[1].split("</div>", 1)[0]
    assert 'aria-invalid="true" aria-describedby="f-q-error f-q-hint">' in q_field
    assert 'id="f-q-error" role="alert">' in q_field and 'id="f-q-hint"' in q_field
    await grant_audit_view(client, "marta")
    reader = client.another_browser()
    async with reader:
        await login(reader, "marta")
        english = await reader.get("/admin/audit", headers=HTML)
    assert "Searches the record as stored: English key names, times in UTC." in english.text
