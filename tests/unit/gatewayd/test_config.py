"""Configuration: defaults, validation (every problem with key, file and line), environment overrides,
secrets kept out of reprs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from gatewayd.config import (
    DEMO_SOURCE,
    BindConfig,
    BindType,
    ConfigError,
    ConfigProblem,
    DaemonConfig,
    LongMessageMode,
    Secret,
    load_config,
    locate_keys,
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
    assert (movistar.binds[0].system_id, movistar.binds[0].password.reveal()) == ("echat", "secret1")
    assert (vodafone.short_codes, vodafone.binds[0].port) == (("795500",), 2776)
    assert vodafone.binds[0].password.reveal() == "secret2"
    assert config.reserved_keywords("es").opt_out == ("BAJA", "STOP")
    assert config.panel.secret_key_ephemeral and len(config.panel.secret_key.reveal()) >= 32


def test_valid_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {})
    movistar = config.carrier("movistar")
    assert movistar.country == "ES" and movistar.long_message is LongMessageMode.SAR
    assert dict(movistar.quirks) == {"source_ton": 3}
    first, second = movistar.binds
    assert (first.name, second.name) == ("movistar-1", "movistar-2")
    assert second.bind_type is BindType.RECEIVER and not second.can_send and second.count == 2
    assert first.password.reveal() == second.password.reveal() == "secret1"
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

        [[services]]
        name = "chat"
        short_code = "111111"
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
        ("services[0].short_code", 32),
    }
    error = str(ConfigError(problems(path)))
    assert f"{path}:27: carriers[1].binds[1].port: must be between 1 and 65535, not 99999" in error
    assert "toolongpassword" not in error


def float_keys(table: type[Any]) -> list[str]:
    return [item.name for item in dataclasses.fields(table) if item.type == "float"]


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
    assert found == {key: "must be at most 2592000, not 1000000000000.0" for key in durations}
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
    assert "beyond the range of floats" in problem.message


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
    assert (config.log.level, config.log.json, config.daemon.mt_retry_limit) == ("DEBUG", True, 9)
    binds = config.carrier("movistar").binds
    assert [bind.password.reveal() for bind in binds] == ["fromenv", "fromenv"]
    assert binds[1].port == 2999
    assert config.reserved_keywords("ES").opt_out == ("BAJA", "STOP", "FIN")
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
    assert config.carrier("movistar").binds[0].password.reveal() == "filepw"
    assert config.panel.secret_key.reveal() == "0123456789abcdef-panel"
    assert not config.panel.secret_key_ephemeral
    shown = repr(config) + str(config)
    for secret in ("filepw", "0123456789abcdef-panel", "dbpass"):
        assert secret not in shown
    assert "gw:***@127.0.0.1" in repr(config.database)
    assert str(Secret("x")) == repr(Secret("x")) == "***"


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


def test_locate_keys_handles_arrays_of_tables_and_multiline_strings() -> None:
    source = dedent('''\
        title = """
        fake = 1
        """
        [[a]]
        x = 1
        [a.inner]
        "quoted key" = 2
        [[a]]
        x = 3
        [[a.b]]
        y = 4
        [[a.b]]
        y = 5
        inline = { z = 6 }
        ''')
    positions = locate_keys(source)
    assert positions[("title",)] == 1 and ("fake",) not in positions
    assert positions[("a", 0, "x")] == 5
    assert positions[("a", 0, "inner", "quoted key")] == 7
    assert positions[("a", 1, "x")] == 9
    assert positions[("a", 1, "b", 0, "y")] == 11
    assert positions[("a", 1, "b", 1, "y")] == 13
    assert positions[("a", 1, "b", 1, "inline")] == 14


def test_the_simulator_table_is_accepted_and_checked(tmp_path: Path) -> None:
    """The gatewayd file may hold ``gatewayd simulator``'s ``[simulator]`` table (docs/SIMULATOR.md):
    the daemon accepts it, and check-config names a mistake in it with its file and line."""
    table = '\n[simulator]\ncontrol = { host = "127.0.0.1", port = 8025 }\n'
    load_config(write(tmp_path, VALID + table), {})
    bad = '\n[simulator]\ncontrol = { host = "127.0.0.1", port = "x" }\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, VALID + bad), {})
    [problem] = caught.value.problems
    assert problem.key == "simulator" and "control.port" in problem.message
    assert problem.line == (VALID + bad).splitlines().index("[simulator]") + 1
