"""The daemon's routing tables built from the configuration: MO service resolution and the MT bind
choice, with the binds that are up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest

from gatewayd.config import Config, ConfigError, load_config
from gatewayd.mo_message import BindInfo, build_inbound, keyword_set
from gatewayd.routes import DEFAULT_RULE, DEFAULT_SERVICE, MORouter, MTRouter, build_routes, mo_table
from routing.errors import NoRoute
from smpp.pdu import DeliverSM

CARRIERS = """\
[[carriers]]
name = "movistar"
country = "ES"
short_codes = ["997745", "997746"]
system_id = "echat"
password = "pw"

[[carriers.binds]]
name = "mov-a"
host = "127.0.0.1"
port = 2775

[[carriers.binds]]
name = "mov-b"
host = "127.0.0.1"
port = 2775

[[carriers.binds]]
name = "mov-rx"
host = "127.0.0.1"
port = 2775
bind_type = "receiver"

[[carriers]]
name = "vodafone"
country = "ES"
short_codes = ["795500"]
system_id = "echat"
password = "pw"

[[carriers.binds]]
name = "voda"
host = "127.0.0.1"
port = 2776
count = 2

[[services]]
name = "chat"
short_code = "997745"

[[services]]
name = "alias-chat"
short_code = "997745"
keyword = "alias"

[[services]]
name = "voda-chat"
short_code = "795500"
"""


def config_with(tmp_path: Path, extra: str = "") -> Config:
    path = tmp_path / "gatewayd.toml"
    path.write_text(CARRIERS + dedent(extra), encoding="utf-8")
    return load_config(path, environ={})


def problems_of(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, extra)
    return [str(problem) for problem in caught.value.problems]


def line_of(tmp_path: Path, text: str) -> int:
    lines = (tmp_path / "gatewayd.toml").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def service(
    router: MORouter,
    text: str,
    *,
    short_code: str = "997745",
    carrier: str = "movistar",
    msisdn: str = "34600111222",
) -> str:
    return router.service(short_code=short_code, text=text, carrier=carrier, msisdn=msisdn, country="ES")


# --- MO -----------------------------------------------------------------------------------------------


def test_services_become_rules_keyword_first_and_default_last(tmp_path: Path) -> None:
    table = mo_table(config_with(tmp_path))
    names = [rule.name for rule in table.rules]
    assert names == [
        "[services] alias-chat 997745/ALIAS",
        "[services] chat 997745",
        "[services] voda-chat 795500",
        DEFAULT_RULE,
    ]
    router = MORouter(table)
    assert service(router, "alias hola") == "alias-chat"
    assert service(router, "hola alias") == "chat"
    assert service(router, "hola", short_code="795500", carrier="vodafone") == "voda-chat"


def test_mo_to_an_unknown_short_code_gets_the_default_service(tmp_path: Path) -> None:
    router = MORouter(mo_table(config_with(tmp_path)))
    assert service(router, "hola", short_code="997746") == DEFAULT_SERVICE
    # a sender routing cannot read still gets a service: the default route's
    assert service(router, "alias hola", msisdn="not-a-number") == DEFAULT_SERVICE


def test_explicit_mo_rules_come_before_services_and_may_replace_the_default(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
        [[routes.mo]]
        name = "catch-all"
        default = true
        service = "overflow"
        operator_pool = "night"

        [[routes.mo]]
        name = "vip-prefix"
        short_code = "997745"
        source_prefix = "+34699"
        service = "vip"
        operator_pool = "vip-team"
        order = 50
        """,
    )
    table = mo_table(config)
    assert [rule.name for rule in table.rules][0] == "vip-prefix"
    assert table.default.name == "catch-all"
    router = MORouter(table)
    assert service(router, "alias hola", msisdn="34699000111") == "vip"
    assert service(router, "alias hola", msisdn="34600000111") == "alias-chat"
    assert service(router, "hola", short_code="997746") == "overflow"


@pytest.mark.parametrize(
    ("carrier", "country", "destination", "text"),
    [
        ("Movistar", "es", "997745", "Alias hola"),
        ("movistar", "ES", "34997745", "hola alias"),
        (" Vodafone ", "ES", "795500", "hola"),
        ("movistar", "ES", "997746", "alias"),
        ("movistar", "ES", "997745", "   "),
        ("movistar", "ES", "997745", "baja"),
    ],
)
def test_a_normalised_mo_gets_the_service_the_checked_path_gives(
    tmp_path: Path, carrier: str, country: str, destination: str, text: str
) -> None:
    router = MORouter(mo_table(config_with(tmp_path)))
    bind = BindInfo(carrier=carrier, bind="b-1", country=country, short_codes=("997745", "795500"))
    pdu = DeliverSM(source_addr="600111222", destination_addr=destination, short_message=text.encode())
    mo = build_inbound(bind, pdu, text.encode(), 0, keyword_set(("BAJA",), (), ()), datetime.now(UTC))
    assert router.service_of(mo) == router.service(
        short_code=mo.short_code, text=mo.text, carrier=carrier, msisdn=mo.msisdn, country=country
    )


def test_a_router_without_a_table_sends_everything_to_the_default_service() -> None:
    assert service(MORouter(), "alias hola") == DEFAULT_SERVICE


# --- configuration errors name the file and line -----------------------------------------------------


def test_a_bad_mo_rule_field_is_reported_at_its_line(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [[routes.mo]]
        name = "broken"
        short_code = "12"
        service = "x"
        operator_pool = "p"
        """,
    )
    line = line_of(tmp_path, 'short_code = "12"')
    assert problems == [
        f"{tmp_path / 'gatewayd.toml'}:{line}: routes.mo[0].short_code: must be 3-15 digits, got '12'"
    ]


def test_unknown_keys_and_missing_filters_are_refused(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [[routes.mo]]
        name = "no-filter"
        service = "x"
        operator_pool = "p"

        [[routes.mt]]
        name = "typo"
        carrier = "movistar"
        bindz = ["mov-a"]
        """,
    )
    assert any("routes.mo[0].default: a rule needs at least one filter" in problem for problem in problems)
    assert any("routes.mt[0].bindz: unknown field" in problem for problem in problems)


def test_rules_must_name_configured_carriers_binds_and_short_codes(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [[routes.mo]]
        name = "elsewhere"
        short_code = "555555"
        carrier = "orange"
        service = "x"
        operator_pool = "p"

        [[routes.mt]]
        name = "ghost"
        carrier = "movistar"
        binds = ["mov-a", "mov-z"]
        """,
    )
    text = "\n".join(problems)
    assert "routes.mo[0].short_code: short code 555555 belongs to no carrier's short_codes" in text
    assert "routes.mo[0].carrier: no carrier is named 'orange'" in text
    assert "routes.mt[0].binds: no carrier has a bind named 'mov-z'" in text
    assert f":{line_of(tmp_path, 'binds = [')}: routes.mt[0].binds" in text


def test_duplicate_names_and_two_defaults_are_refused(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [[routes.mt]]
        name = "one"
        default = true
        carrier_binds = true

        [[routes.mt]]
        name = "one"
        default = true
        binds = ["mov-a"]
        """,
    )
    text = "\n".join(problems)
    assert "routes.mt[1].name: another [[routes.mt]] rule is named 'one'" in text
    assert "routes.mt[1].default: rule 'one' is already the default route" in text


# --- MT -----------------------------------------------------------------------------------------------


def router_for(tmp_path: Path, extra: str = "") -> MTRouter:
    config = config_with(tmp_path, extra)
    return MTRouter(build_routes(config).mt, config.carriers)


def test_a_reply_leaves_by_the_bind_its_mo_came_in_on(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    up = {"mov-a", "mov-b", "voda#1", "voda#2"}
    chosen = {
        router.select(up, carrier="movistar", destination="34600111222", inbound_bind="mov-b")
        for _ in range(3)
    }
    assert chosen == {"mov-b"}


def test_inbound_bind_down_fails_over_to_another_bind_of_the_same_carrier(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    up = {"mov-a", "voda#1", "voda#2"}
    chosen = {
        router.select(up, carrier="movistar", destination="34600111222", inbound_bind="mov-b")
        for _ in range(4)
    }
    assert chosen == {"mov-a"}


def test_without_a_preference_the_carriers_binds_take_turns_never_the_receiver(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    up = {"mov-a", "mov-b", "mov-rx", "voda#1", "voda#2"}
    chosen = [router.select(up, carrier="movistar", destination="34600111222") for _ in range(4)]
    assert sorted(chosen) == ["mov-a", "mov-a", "mov-b", "mov-b"]
    copies = {router.select(up, carrier="vodafone", destination="34700111222") for _ in range(4)}
    assert copies == {"voda#1", "voda#2"}


def test_no_bind_up_is_no_route(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    with pytest.raises(NoRoute) as caught:
        router.select({"voda#1"}, carrier="movistar", destination="34600111222", inbound_bind="mov-a")
    assert caught.value.rule == DEFAULT_RULE
    assert caught.value.candidates == ("mov-a", "mov-b")


def test_an_explicit_mt_rule_orders_binds_and_expands_copies(tmp_path: Path) -> None:
    router = router_for(
        tmp_path,
        """
        [[routes.mt]]
        name = "premium-by-voda"
        destination_prefix = "+34699"
        binds = ["voda", "mov-b"]
        """,
    )
    up = {"mov-a", "mov-b", "voda#1", "voda#2"}
    chosen = {router.select(up, carrier="movistar", destination="34699000111") for _ in range(4)}
    assert chosen == {"voda#1", "voda#2"}
    assert router.select({"mov-a", "mov-b"}, carrier="movistar", destination="34699000111") == "mov-b"
    # other destinations keep the default: the subscriber's carrier
    assert router.select(up, carrier="movistar", destination="34600000111", inbound_bind="mov-a") == "mov-a"
    # first match wins: the matching rule's binds down means the MT waits, it does not borrow others
    with pytest.raises(NoRoute):
        router.select({"mov-a"}, carrier="movistar", destination="34699000111")


def test_an_mt_without_a_readable_destination_goes_by_its_carrier(tmp_path: Path) -> None:
    router = router_for(tmp_path)
    assert router.select({"mov-a", "mov-b"}, carrier="movistar", inbound_bind="mov-b") == "mov-b"
    assert router.select({"mov-a"}, carrier="movistar", destination="not-digits") == "mov-a"
    with pytest.raises(NoRoute):
        router.select({"mov-a"}, carrier="vodafone")


def test_without_carriers_nothing_is_routed() -> None:
    router = MTRouter.from_carriers(())
    with pytest.raises(NoRoute):
        router.select({"mov-a"}, carrier="movistar", destination="34600111222")
