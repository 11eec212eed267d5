"""Configuration: defaults, validation (every problem with key, file and line), environment overrides,
secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import BaseModel

from gatewayd.config import (
    DEMO_SOURCE,
    BindConfig,
    BindType,
    ConfigError,
    ConfigProblem,
    DaemonConfig,
    LongMessageMode,
    load_config,
)

VALID = """\
[database]
url = "postgresql+asyncpg://gw:dbpass@127.0.0.1/echat"

[bus]
url = "mqtt://127.0.0.1:1883"
topic_prefix = "prod/echat"

[daemon]
instance = "node-1"

[[carriers]]
name = "movistar"
country = "es"
short_codes = ["997745"]
long_message = "sar"
system_id = "echat"
password = "secret1"

[carriers.quirks]
source_ton = 3

[[carriers.binds]]
host = "10.0.0.1"
port = 2775

[[carriers.binds]]
host = "10.0.0.2"
port = 2775
bind_type = "receiver"
count = 2

[[services]]
name = "chat"
short_code = "997745"
keyword = "alias"
"""


def write(tmp_path: Path, text: str, name: str = "gatewayd.toml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def problems(path: Path | None, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return list(caught.value.problems)


def test_demo_configuration_without_a_file() -> None:
    config = load_config(None, {})
    assert config.source is None
    assert config.database.url == "sqlite+aiosqlite:///var/gatewayd.db"
    assert config.bus.url == "memory://" and config.bus.topic_prefix == "echat"
    movistar, vodafone = config.carriers
    assert (movistar.name, movistar.country, movistar.short_codes) == ("movistar", "ES", ("997745",))
    assert (movistar.binds[0].host, movistar.binds[0].port) == ("127.0.0.1", 2775)
    assert (movistar.binds[0].system_id, movistar.binds[0].password.get_secret_value()) == (
        "echat",
        "secret1",
    )
    assert (vodafone.short_codes, vodafone.binds[0].port) == (("795500",), 2776)
    assert vodafone.binds[0].password.get_secret_value() == "secret2"
    assert config.keywords["ES"].opt_out == ("BAJA", "STOP")
    assert config.panel.secret_key_ephemeral and len(config.panel.secret_key.get_secret_value()) >= 32


def test_valid_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {})
    movistar = config.carrier("movistar")
    assert movistar.country == "ES" and movistar.long_message is LongMessageMode.SAR
    assert dict(movistar.quirks) == {"source_ton": 3}
    first, second = movistar.binds
    assert (first.name, second.name) == ("movistar-1", "movistar-2")
    assert second.bind_type is BindType.RECEIVER and not second.can_send and second.count == 2
    assert first.password.get_secret_value() == second.password.get_secret_value() == "secret1"
    assert config.services[0].keyword == "ALIAS"
    assert config.bus.client_id == "node-1"


def test_every_problem_is_reported_with_key_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [log]
        level = "LOUD"

        [[carriers]]
        name = "movistar"
        country = "ES"
        short_codes = ["997745"]
        password = "secret1"
        system_id = "echat"

        [[carriers.binds]]
        host = "10.0.0.1"
        port = 2775

        [[carriers]]
        name = "vodafone"
        country = "Spain"
        short_codes = ["795500"]
        system_id = "echat"
        password = "toolongpassword"

        [[carriers.binds]]
        host = "10.0.0.3"
        port = 2776

        [[carriers.binds]]
        port = 99999
        colour = "blue"
        """,
    )
    found = {(problem.key, problem.line) for problem in problems(path)}
    assert found == {
        ("log.level", 2),
        ("carriers[1].country", 17),
        ("carriers[1].password", 20),
        ("carriers[1].binds[1].host", 26),  # missing: the line of its [[carriers.binds]] header
        ("carriers[1].binds[1].port", 27),
        ("carriers[1].binds[1].colour", 28),
    }
    error = str(ConfigError(problems(path)))
    assert f"{path}:27: carriers[1].binds[1].port: must be at most 65535, not 99999" in error
    assert "toolongpassword" not in error


def test_references_are_checked_with_the_rest(tmp_path: Path) -> None:
    """What no table can check alone (names unique, short codes and binds that exist) is reported
    together with the other problems once the tables it reads are valid."""
    text = VALID.replace('level = "INFO"', "") + dedent("""\

        [log]
        level = "LOUD"

        [[services]]
        name = "lost"
        short_code = "111111"

        [[routes.mt]]
        name = "to-nowhere"
        binds = ["nowhere-1"]
        default = true
        """)
    lines = text.splitlines()
    found = {(problem.key, problem.line, problem.message) for problem in problems(write(tmp_path, text))}
    assert found == {
        (
            "log.level",
            lines.index('level = "LOUD"') + 1,
            "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', not 'LOUD'",
        ),
        (
            "services[1].short_code",
            lines.index('short_code = "111111"') + 1,
            "short code 111111 belongs to no carrier's short_codes",
        ),
        (
            "routes.mt[0].binds",
            lines.index('binds = ["nowhere-1"]') + 1,
            "no carrier has a bind named 'nowhere-1'",
        ),
    }


def float_keys(table: type[BaseModel]) -> list[str]:
    return [name for name, field in table.model_fields.items() if field.annotation is float]


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+nan"])
def test_every_float_key_refuses_non_finite_numbers(tmp_path: Path, literal: str) -> None:
    """TOML's nan and inf pass every range check; a nan claim lease made the daemon fail each claim."""
    daemon_keys, bind_keys = float_keys(DaemonConfig), float_keys(BindConfig)
    assert "mt_claim_lease" in daemon_keys and "tps" in bind_keys
    text = VALID.replace('instance = "node-1"', "\n".join(f"{key} = {literal}" for key in daemon_keys))
    text = text.replace(
        "port = 2775\n\n", "port = 2775\n" + "".join(f"{key} = {literal}\n" for key in bind_keys), 1
    )
    path = write(tmp_path, text)
    lines = path.read_text(encoding="utf-8").splitlines()
    found = {problem.key: problem for problem in problems(path)}
    expected = [f"daemon.{key}" for key in daemon_keys] + [f"carriers[0].binds[0].{key}" for key in bind_keys]
    assert sorted(found) == sorted(expected)
    for problem in found.values():
        assert problem.message.startswith("must be a finite number"), problem
        assert problem.source == str(path) and lines[problem.line - 1].startswith(
            problem.key.rsplit(".", 1)[1]
        )


def test_durations_are_at_most_thirty_days(tmp_path: Path) -> None:
    """A lease of 1e12 s put every claim's expiry past year 9999: each claim failed, as with nan."""
    durations = [*float_keys(DaemonConfig), "enquire_link_interval", "response_timeout"]
    text = VALID.replace(
        'instance = "node-1"', "\n".join(f"{key} = 1e12" for key in float_keys(DaemonConfig))
    )
    text = text.replace(
        "port = 2775\n\n", "port = 2775\nenquire_link_interval = 1e12\nresponse_timeout = 1e12\n\n", 1
    )
    found = {problem.key.rsplit(".", 1)[1]: problem.message for problem in problems(write(tmp_path, text))}
    assert found == {key: "must be at most 2592000, not 1000000000000" for key in durations}
    month = VALID.replace('instance = "node-1"', "mt_claim_lease = 2592000\nmt_retry_backoff_max = 2592000")
    assert load_config(write(tmp_path, month), {}).daemon.mt_claim_lease == 2_592_000


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e999"])
def test_environment_overrides_refuse_non_finite_numbers(tmp_path: Path, text: str) -> None:
    [problem] = problems(write(tmp_path, VALID), {"GATEWAYD_DAEMON_MT_CLAIM_LEASE": text})
    assert (problem.key, problem.source) == ("daemon.mt_claim_lease", "$GATEWAYD_DAEMON_MT_CLAIM_LEASE")
    assert problem.message.startswith("must be a finite number")


def test_an_integer_beyond_float_range_is_not_a_number_setting(tmp_path: Path) -> None:
    text = VALID.replace('instance = "node-1"', f"mt_claim_lease = {10**400}")
    [problem] = problems(write(tmp_path, text))
    assert (problem.key, problem.line) == ("daemon.mt_claim_lease", 9)
    assert problem.message == "must be a number, not an integer of 401 digits"


def test_environment_overrides(tmp_path: Path) -> None:
    environ = {
        "GATEWAYD_DATABASE_URL": "sqlite+aiosqlite:///tmp/x.db",
        "GATEWAYD_LOG_LEVEL": "debug",
        "GATEWAYD_LOG_JSON": "true",
        "GATEWAYD_DAEMON_MT_RETRY_LIMIT": "9",
        "GATEWAYD_CARRIERS__MOVISTAR__PASSWORD": "fromenv",
        "GATEWAYD_CARRIERS__MOVISTAR__BINDS__1__PORT": "2999",
        "GATEWAYD_KEYWORDS__ES__OPT_OUT": "BAJA, STOP, FIN",
        "GATEWAYD_SERVICES__CHAT__CALLCENTRE": "yes",
        "HOME": "/root",
    }
    config = load_config(write(tmp_path, VALID), environ)
    assert config.database.url == "sqlite+aiosqlite:///tmp/x.db"
    assert (config.log.level, config.log.json_lines, config.daemon.mt_retry_limit) == ("DEBUG", True, 9)
    binds = config.carrier("movistar").binds
    assert [bind.password.get_secret_value() for bind in binds] == ["fromenv", "fromenv"]
    assert binds[1].port == 2999
    assert config.keywords["ES"].opt_out == ("BAJA", "STOP", "FIN")
    assert config.keywords["ES"].help == ("AYUDA", "INFO")  # the built-in lists the variable left alone
    assert config.services[0].callcentre


def test_environment_problems_name_the_variable(tmp_path: Path) -> None:
    found = problems(
        write(tmp_path, VALID),
        {
            "GATEWAYD_CARRIERS__MOVISTAR__BINDS__0__PORT": "twenty",
            "GATEWAYD_CARRIERS__ORANGE__PASSWORD": "x",
            "GATEWAYD_LOGG_LEVEL": "INFO",
        },
    )
    by_source = {problem.source: problem for problem in found}
    assert by_source["$GATEWAYD_CARRIERS__MOVISTAR__BINDS__0__PORT"].key == "carriers[0].binds[0].port"
    assert "must be an integer" in by_source["$GATEWAYD_CARRIERS__MOVISTAR__BINDS__0__PORT"].message
    assert by_source["$GATEWAYD_CARRIERS__ORANGE__PASSWORD"].message == "no such element to override"
    assert by_source["$GATEWAYD_LOGG_LEVEL"].message == "unknown setting"
    assert all(problem.line is None for problem in found)


def test_demo_accepts_environment_overrides() -> None:
    config = load_config(None, {"GATEWAYD_BUS_URL": "mqtt://127.0.0.1:1883"})
    assert config.bus.url == "mqtt://127.0.0.1:1883"
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"GATEWAYD_METRICS_LISTEN": "nowhere"})
    [problem] = caught.value.problems
    assert (problem.key, problem.source) == ("metrics.listen", "$GATEWAYD_METRICS_LISTEN")
    assert DEMO_SOURCE.startswith("<")


def test_secrets_are_read_from_files_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text("filepw\n", encoding="utf-8")
    (tmp_path / "panel.key").write_text("0123456789abcdef-panel\n", encoding="utf-8")
    text = VALID.replace('password = "secret1"', 'password_file = "bind.pw"')
    text += '\n[panel]\nsecret_key_file = "panel.key"\n'
    config = load_config(write(tmp_path, text), {})
    assert config.carrier("movistar").binds[0].password.get_secret_value() == "filepw"
    assert config.panel.secret_key.get_secret_value() == "0123456789abcdef-panel"
    assert not config.panel.secret_key_ephemeral
    shown = repr(config) + str(config)
    for secret in ("filepw", "0123456789abcdef-panel", "dbpass"):
        assert secret not in shown
    assert "gw:***@127.0.0.1" in repr(config.database)


def test_missing_secret_file_names_the_key_and_line(tmp_path: Path) -> None:
    text = VALID.replace('password = "secret1"', 'password_file = "absent.pw"')
    [problem] = problems(write(tmp_path, text))
    assert (problem.key, problem.line) == ("carriers[0].password_file", 17)
    assert "absent.pw" in problem.message


def test_invalid_toml_reports_its_line(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, '[log]\nlevel = "INFO"\njson = tru\n'))
    assert problem.line == 3 and "not valid TOML" in problem.message


def test_missing_file() -> None:
    [problem] = problems(Path("/nonexistent/gatewayd.toml"))
    assert problem.source == "/nonexistent/gatewayd.toml" and "cannot read" in problem.message


def test_invalid_utf8_names_the_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.toml"
    path.write_bytes(b'[log]\nlevel = "INFO"\n# caf\xe9\n')
    [problem] = problems(path)
    assert (problem.source, problem.line) == (str(path), 3)
    assert problem.message == "not valid UTF-8: byte 0xe9 at byte offset 26"


@pytest.mark.parametrize("depth", [40, 5000])
def test_deep_nesting_is_one_clear_problem(tmp_path: Path, depth: int) -> None:
    """5,000 levels overflowed the parser's recursion; 40 parse but are refused before anything walks them."""
    path = write(tmp_path, VALID.replace("source_ton = 3", f"deep = {'[' * depth}{']' * depth}"))
    [problem] = problems(path)
    assert (problem.key, problem.source) == ("<file>", str(path))
    assert problem.message == "nested deeper than 32 levels"


def test_an_integer_of_thousands_of_digits_is_invalid_toml(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, f"[daemon]\nmt_retry_limit = {'9' * 5000}\n"))
    assert problem.message == "not valid TOML: an integer with thousands of digits"


def test_a_file_larger_than_a_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.toml"
    with path.open("wb") as file:
        file.truncate(2 << 20)  # sparse: 2 MiB of NUL bytes
    [problem] = problems(path)
    assert problem.message == "too large: more than 1,048,576 bytes"


def test_a_directory_is_not_a_configuration_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path)
    assert (problem.source, problem.message) == (str(tmp_path), "not a regular file")


def test_secret_files_are_read_under_the_same_rules(tmp_path: Path) -> None:
    with (tmp_path / "huge.pw").open("wb") as file:
        file.truncate(2 << 20)
    text = VALID.replace('password = "secret1"', 'password_file = "huge.pw"')
    [problem] = problems(write(tmp_path, text))
    assert (problem.key, problem.line) == ("carriers[0].password_file", 17)
    assert problem.message == f"{tmp_path / 'huge.pw'}: too large: more than 1,048,576 bytes"


def test_the_shipped_example_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[3] / "gatewayd" / "config.example.toml"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "movistar.password").write_text("pw\n", encoding="utf-8")
    copy = write(tmp_path, example.read_text(encoding="utf-8"), "example.toml")
    config = load_config(copy, {})
    assert [carrier.name for carrier in config.carriers] == ["movistar", "vodafone"]
    billing = config.services[1].billing
    assert billing is not None and (billing.price_mt, billing.currency, billing.acceptance) == (
        120,
        "EUR",
        True,
    )
    assert [(step.at, step.action.value) for step in config.spend["GB"].steps] == [
        (1000, "confirm"),
        (1500, "notify"),
        (3000, "confirm"),
        (4000, "cap"),
    ]


def test_the_simulator_table_is_left_to_the_simulator(tmp_path: Path) -> None:
    """The gatewayd file may hold ``gatewayd simulator``'s ``[simulator]`` table: the daemon leaves it
    alone (``gatewayd check-config`` checks it with the simulator's model)."""
    table = '\n[simulator]\ncontrol = { host = "127.0.0.1", port = "x" }\n'
    assert load_config(write(tmp_path, VALID + table), {}).carriers


def test_each_service_has_a_time_zone_the_daemons_by_default(tmp_path: Path) -> None:
    """The hora / fecha variables are read in the service's zone: its own, or [daemon] timezone."""
    text = VALID.replace('instance = "node-1"', 'instance = "node-1"\ntimezone = "America/Bogota"')
    text += dedent("""
        [[services]]
        name = "canarias"
        short_code = "997745"
        keyword = "ISLAS"
        timezone = "Atlantic/Canary"
        """)
    chat, canarias = load_config(write(tmp_path, text), {}).services
    assert (str(chat.zone), str(canarias.zone)) == ("America/Bogota", "Atlantic/Canary")
    bad = text.replace("Atlantic/Canary", "Mars/Olympus")
    [problem] = problems(write(tmp_path, bad))
    assert (problem.key, problem.message) == ("services[1].timezone", "unknown time zone 'Mars/Olympus'")


def test_keys_nothing_reads_are_refused(tmp_path: Path) -> None:
    """daemon.group_commit_max_delay was accepted and ignored: a batch commits as soon as the one
    before it is done. A key that does nothing must not look as if it did."""
    text = VALID.replace('instance = "node-1"', 'instance = "node-1"\ngroup_commit_max_delay = 0.5')
    [problem] = problems(write(tmp_path, text))
    assert (problem.key, problem.message) == ("daemon.group_commit_max_delay", "unknown key")


def test_a_bad_carrier_name_is_one_problem_not_one_per_bind(tmp_path: Path) -> None:
    """Binds without a name are named after their carrier: a carrier name that is wrong must not make
    a wrong name for each of its binds, which the file does not even spell."""
    text = VALID.replace('name = "movistar"', 'name = "Movistar"')
    assert [problem.key for problem in problems(write(tmp_path, text))] == ["carriers[0].name"]


def test_allow_lists_are_host_port_pairs_lower_cased_and_a_bad_one_names_its_key(tmp_path: Path) -> None:
    good = VALID + '\n[webhooks]\nallow = ["LocalHost:8080", "[::1]:9000"]\n'
    assert load_config(write(tmp_path, good), {}).webhooks.allow == ("localhost:8080", "[::1]:9000")
    bad = (
        VALID + '\n[panel]\ngallery_fetch_allow = ["cdn.local"]\n\n[webhooks]\nallow = ["127.0.0.1:99999"]\n'
    )
    found = {problem.key: problem.message for problem in problems(write(tmp_path, bad))}
    assert set(found) == {"panel.gallery_fetch_allow[0]", "webhooks.allow[0]"}
    assert found["webhooks.allow[0]"].startswith("must be host:port")


def test_quiet_hours_per_country_over_the_default(tmp_path: Path) -> None:
    text = VALID + dedent(
        """
        [quiet_hours]
        default = "22:00-09:00"
        reply_window = 600

        [quiet_hours.countries]
        gb = "21:00-08:00"
        FR = "off"

        [quiet_hours.zones]
        GB = "Europe/London"
        """
    )
    rule = load_config(write(tmp_path, text), {}).quiet_rule()
    assert str(rule.hours("GB")) == "21:00-08:00" and rule.hours("FR") is None
    assert str(rule.hours("ES")) == "22:00-09:00" and rule.zone("GB").key == "Europe/London"
    assert rule.zone("ES").key == "Europe/Madrid" and rule.recent.total_seconds() == 600


def test_the_older_campaigns_keys_still_set_the_quiet_hours(tmp_path: Path) -> None:
    assert str(load_config(write(tmp_path, VALID), {}).quiet_rule().default) == "22:00-09:00"
    older = VALID + dedent(
        """
        [campaigns]
        quiet_hours = "23:00-08:00"

        [campaigns.country_zones]
        MX = "America/Mexico_City"
        """
    )
    rule = load_config(write(tmp_path, older), {}).quiet_rule()
    assert str(rule.default) == "23:00-08:00" and rule.zone("MX").key == "America/Mexico_City"
    off = VALID + '\n[quiet_hours]\ndefault = "off"\n'
    assert load_config(write(tmp_path, off), {}).quiet_rule().default is None


def test_quiet_hours_said_twice_or_badly_name_the_key_and_line(tmp_path: Path) -> None:
    text = VALID + dedent(
        """
        [campaigns]
        quiet_hours = "23:00-08:00"

        [campaigns.country_zones]
        MX = "America/Mexico_City"

        [quiet_hours]
        default = "22:00-09:00"

        [quiet_hours.countries]
        GB = "21-08"

        [quiet_hours.zones]
        MX = "America/Mexico_City"
        """
    )
    path = write(tmp_path, text)
    found = {problem.key: problem.message for problem in problems(path)}
    assert found["quiet_hours.countries.GB"].startswith("must be HH:MM-HH:MM")
    # the conflicts are checked once the table itself is valid
    fixed = text.replace('GB = "21-08"', 'GB = "21:00-08:00"')
    found = {problem.key: problem.message for problem in problems(write(tmp_path, fixed))}
    assert found == {
        "quiet_hours.default": "also given as [campaigns] quiet_hours: keep one",
        "quiet_hours.zones.MX": "MX also has a zone in [campaigns.country_zones]: keep one",
    }


BILLED = (
    VALID
    + """
[services.billing]
price_mt = 1.50
currency = "gbp"
provider = "Acme"
billed = "mt"
notice = "Chat {price} {currency} per message from {provider}. Reply YES"
acceptance = true
notice_again_after_days = 30

[keywords.ES]
opt_out = ["BAJA"]
accept = ["Sí", "yes"]

[spend.ES]
steps = [
  {at = 10, action = "confirm"},
  {at = 15, action = "notify", text = "{spent} so far"},
  {at = 40, action = "cap"},
]
"""
)


def test_a_billed_service(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BILLED), {})
    billing = config.services[0].billing
    assert billing is not None
    assert (billing.price_mt, billing.price_mo, billing.currency) == (150, 0, "GBP")
    assert billing.acceptance and billing.notice_again_after_days == 30 and billing.steps is None
    assert [(step.at, step.action.value, step.text) for step in config.spend["ES"].steps] == [
        (1000, "confirm", None),
        (1500, "notify", "{spent} so far"),
        (4000, "cap", None),
    ]
    assert config.keywords["ES"].accept == ("SÍ", "YES")


def test_a_service_without_billing_has_none(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {})
    assert config.services[0].billing is None and dict(config.spend) == {}
    assert load_config(None, {}).keywords["ES"].accept == ("SI", "YES")


def test_billing_problems_are_named(tmp_path: Path) -> None:
    text = (
        BILLED.replace("price_mt = 1.50", "price_mt = 1.505")
        .replace('billed = "mt"', 'billed = "mt"\nprice_mo = -1')
        .replace('currency = "gbp"', 'currency = "pounds"')
        .replace('action = "notify"', 'action = "remind"')
    )
    found = {(problem.key, problem.message) for problem in problems(write(tmp_path, text))}
    assert ("services[0].billing.price_mt", "must have at most two decimals, not 1.505") in found
    assert ("services[0].billing.price_mo", "must not be negative, not -1") in found
    assert ("services[0].billing.currency", "must be an ISO 4217 code such as EUR, not 'POUNDS'") in found
    assert ("spend.ES.steps[1].action", "must be one of 'notify', 'confirm' or 'cap', not 'remind'") in found


def test_steps_must_increase_and_end_with_the_cap(tmp_path: Path) -> None:
    text = BILLED.replace('{at = 10, action = "confirm"},', '{at = 10, action = "cap"},').replace(
        '{at = 15, action = "notify", text = "{spent} so far"},\n  {at = 40, action = "cap"},',
        '{at = 10, action = "notify"},',
    )
    found = {(problem.key, problem.message) for problem in problems(write(tmp_path, text))}
    assert found == {
        ("spend.ES.steps[0].action", "a cap must be the last step (nothing is billed after it)"),
        ("spend.ES.steps[1].at", "must be above the step before (10.00), not 10.00"),
    }


def test_the_billed_price_must_be_set(tmp_path: Path) -> None:
    text = BILLED.replace('billed = "mt"', 'billed = "mo"')
    found = [(problem.key, problem.message) for problem in problems(write(tmp_path, text))]
    assert found == [("services[0].billing.price_mo", "must be above 0: the service bills each MO")]


def test_one_billed_service_per_short_code(tmp_path: Path) -> None:
    text = BILLED.replace(
        "[keywords.ES]",
        """[[services]]
name = "tarot"
short_code = "997745"
keyword = "tarot"
[services.billing]
price_mo = 1.20
currency = "EUR"
provider = "Acme"
billed = "mo"
notice = "1.20 EUR"

[keywords.ES]""",
    )
    found = [(problem.key, problem.message) for problem in problems(write(tmp_path, text))]
    assert found == [
        (
            "services[1].billing",
            "service 'chat' already bills short code 997745: a short code has one price, so at most one"
            " service on it has billing",
        )
    ]


@pytest.mark.parametrize(("index", "country", "short_code"), [(0, "ES", "355500"), (1, "GB", "69000")])
def test_the_compliance_examples_are_valid(tmp_path: Path, index: int, country: str, short_code: str) -> None:
    """docs/COMPLIANCE.md's Spanish and UK examples load as written (with a carrier for the short code)."""
    document = (Path(__file__).parents[3] / "docs" / "COMPLIANCE.md").read_text(encoding="utf-8")
    example = document.split("```toml\n")[index + 1].split("```", 1)[0]
    carrier = f"""
[[carriers]]
name = "carrier"
country = "{country}"
short_codes = ["{short_code}"]
system_id = "echat"
password = "secret"

[[carriers.binds]]
host = "127.0.0.1"
port = 2775
"""
    config = load_config(write(tmp_path, carrier + example), {})
    billing = config.services[0].billing
    assert billing is not None and billing.acceptance
    assert config.keywords[country].accept


def test_cluster_timings_have_defaults_and_three_heartbeats_per_lease(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {})
    assert (config.cluster.lease, config.cluster.heartbeat, config.cluster.margin) == (6.0, 1.0, 1.5)
    path = write(tmp_path, VALID + "\n[cluster]\nlease = 5.0\nheartbeat = 2.0\n")
    [problem] = problems(path)
    assert problem.key == "cluster.heartbeat"
    assert "a third of lease" in problem.message
    assert problem.line == VALID.count("\n") + 4
    tuned = load_config(path, {"GATEWAYD_CLUSTER_HEARTBEAT": "1.5"})
    assert (tuned.cluster.lease, tuned.cluster.heartbeat) == (5.0, 1.5)
