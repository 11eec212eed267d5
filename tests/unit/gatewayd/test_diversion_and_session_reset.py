"""The call-centre diversion's rule (the configuration until the first switch, then the switch; a
reloaded configuration never overrides a switch) and the reading of a session-reset list (numbers per
country, client IDs, CSV cells and header, invalid lines with their reason, the line limit)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import gatewayd.store.models  # noqa: F401  (every table on Base.metadata)
from gatewayd.config import load_config
from gatewayd.diversion import DiversionCache, diversion_of
from gatewayd.session_reset import MAX_LINES, LineKind, read_lines
from gatewayd.store.base import Base
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.services import ServiceSetting, switch_diversion

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def switched(service: str, diverted: bool, version: int = 1) -> ServiceSetting:
    return ServiceSetting(
        service=service, callcentre_diverted=diverted, changed_at=T0, changed_by="ana", version=version
    )


def test_the_configuration_decides_until_a_switch_then_the_switch_does() -> None:
    initial = {"chat": False, "tarot": True, "amor": True}
    assert diversion_of(initial, {}).services == {"tarot", "amor"}
    rows = {"chat": switched("chat", True), "tarot": switched("tarot", False, version=3)}
    diversion = diversion_of(initial, rows)
    assert diversion.services == {"chat", "amor"}
    assert diversion.version == 4  # switches made, all services together


async def test_a_reloaded_configuration_keeps_the_switches_read_last(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await switch_diversion(session, "tarot", False, T0, by="ana", by_id=None)
        cache = DiversionCache.for_services([("chat", False), ("tarot", True)])
        assert cache.services == {"tarot"} and cache.is_stale(1)
        async with sessions() as session:
            assert (await cache.refresh(session)).services == frozenset()
        assert not cache.is_stale(1)
        reloaded = cache.configure([("chat", True), ("tarot", True), ("nuevo", True)])
        assert reloaded.services == {"chat", "nuevo"} and reloaded.version == 1
    finally:
        await engine.dispose()


def test_each_line_is_read_as_a_number_of_the_country_or_a_client_id() -> None:
    text = "\n".join(
        [
            "600 111 222",
            "+34 600-111-223",
            "0034600111224",
            "cabcd2345",
            "",
            "hola",
            "12",
            "+34 600",
        ]
    )
    lines = read_lines(text, "ES")
    assert [(line.number, line.kind, line.key) for line in lines[:4]] == [
        (1, LineKind.NUMBER, "34600111222"),
        (2, LineKind.NUMBER, "34600111223"),
        (3, LineKind.NUMBER, "34600111224"),
        (4, LineKind.CLIENT_ID, "CABCD2345"),
    ]
    invalid = lines[4:]
    assert [line.number for line in invalid] == [6, 7, 8]  # the blank line 5 is skipped
    assert all(line.kind is LineKind.INVALID and line.problem for line in invalid)
    assert invalid[0].problem == "neither a phone number nor a client ID"


def test_a_csv_file_gives_its_first_cell_and_its_header_is_skipped() -> None:
    lines = read_lines('telefono;nombre\n"600111222";Pepe\n611222333,Ana\n', "ES")
    assert [(line.number, line.key) for line in lines] == [(2, "34600111222"), (3, "34611222333")]


def test_a_list_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="lines"):
        read_lines("600111222\n" * (MAX_LINES + 1), "ES")
    assert len(read_lines("600111222\n" * MAX_LINES, "ES")) == MAX_LINES


def test_the_call_centre_pool_is_configurable(tmp_path: Path) -> None:
    assert load_config(None, {}).assignment.callcentre_pool == "callcentre"
    path = tmp_path / "gatewayd.toml"
    path.write_text('[assignment]\ncallcentre_pool = "noche"\n', encoding="utf-8")
    assert load_config(path, {}).assignment.callcentre_pool == "noche"
