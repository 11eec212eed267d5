"""Profiles, TOML configuration, MSISDNs and the CLI arguments of the simulator (no sockets)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from simulator.cli import _config_from_args, add_simulator_command
from simulator.errors import SettingsError
from simulator.msisdn import InvalidMSISDN, normalize_msisdn, random_msisdns
from simulator.profiles import default_config, load_config, parse_config
from smpp.constants import BindType


def test_default_config_serves_two_spanish_carriers() -> None:
    config = default_config()
    movistar, vodafone = config.carriers
    assert (movistar.name, movistar.port, movistar.password) == ("movistar", 2775, "secret1")
    assert (vodafone.name, vodafone.port, vodafone.password) == ("vodafone", 2776, "secret2")
    assert movistar.short_codes == vodafone.short_codes == ("997745", "795500")
    assert movistar.system_id == vodafone.system_id == "echat"
    assert movistar.country == "ES" and config.control_port == 8025
    assert movistar.allowed_bind_types == frozenset(BindType)


def test_toml_file_with_a_simulator_table(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        """
[simulator]
mt_store_size = 500
trace = "/tmp/pdus.jsonl"
trace_dir = "/var/tmp/traces"
[simulator.control]
port = 9000
[simulator.carriers.orange]
country = "FR"
port = 3000
system_id = "echat"
password = "pw"
short_codes = ["36111"]
bind_types = ["transceiver"]
tps = 50
message_id_format = "decimal"
[simulator.carriers.orange.receipts]
delay = { kind = "exponential", mean = 2.5 }
statuses = { DELIVRD = 80, UNDELIV = 20 }
overrides = { "+33612345678" = "REJECTD" }
[simulator.carriers.orange.faults]
msgqful = { count = 3 }
""",
        encoding="utf-8",
    )
    config = load_config(path)
    [orange] = config.carriers
    assert config.control_port == 9000 and config.mt_store_size == 500
    assert config.trace_path == "/tmp/pdus.jsonl" and config.trace_dir == "/var/tmp/traces"
    assert orange.country == "FR" and orange.tps == 50 and orange.message_id_format == "decimal"
    assert orange.allowed_bind_types == frozenset({BindType.TRANSCEIVER})
    assert orange.receipts.delay.kind == "exponential" and orange.receipts.delay.mean == 2.5
    assert dict(orange.receipts.statuses) == {"DELIVRD": 80.0, "UNDELIV": 20.0}
    assert orange.receipts.overrides == {"33612345678": "REJECTD"}
    assert orange.faults.model_dump(exclude_unset=True) == {"msgqful": {"count": 3}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"carriers": {"x": {"country": "ES", "port": 1, "system_id": "a"}}},
            "carriers.x.password: is required",
        ),
        (
            {"carriers": {"x": {"country": "ZZ", "port": 1, "system_id": "a", "password": "b"}}},
            "carriers.x.country: unknown country 'ZZ'",
        ),
        (
            {"carriers": {"x": {"country": "ES", "port": 70000, "system_id": "a", "password": "b"}}},
            "carriers.x.port: must be at most 65535, not 70000",
        ),
        (
            {"carriers": {"x": {"country": "ES", "port": 1, "system_id": "a", "password": "b", "tsp": 3}}},
            "carriers.x.tsp: unknown key",
        ),
        (
            {
                "carriers": {
                    "x": {
                        "country": "ES",
                        "port": 1,
                        "system_id": "a",
                        "password": "b",
                        "receipts": {"delay": {"kind": "uniform", "low": 3, "high": 1}},
                    }
                }
            },
            "carriers.x.receipts.delay.high: must be at least low (3), not 1",
        ),
        (
            {
                "carriers": {
                    "x": {
                        "country": "ES",
                        "port": 1,
                        "system_id": "a",
                        "password": "b",
                        "receipts": {"statuses": {"DELIVRD": 0}},
                    }
                }
            },
            "carriers.x.receipts.statuses: at least one state needs a weight above 0",
        ),
        (
            {
                "carriers": {
                    "x": {
                        "country": "ES",
                        "port": 1,
                        "system_id": "a",
                        "password": "b",
                        "faults": {"throttle": True},
                    }
                }
            },
            "carriers.x.faults.throttle: the carrier has no tps in its profile",
        ),
        ({"carriers": {}}, "carriers: needs at least one carrier"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        parse_config(data, "sim.toml")
    assert str(error.value).startswith("sim.toml: ")
    assert message in str(error.value)


def test_missing_toml_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[simulator]\ntrace = "caf\xe9"\n', "sim.toml:2: not valid UTF-8: byte 0xe9 at byte offset 24"),
        (b"[simulator]\nseed = " + b"[" * 5000 + b"]" * 5000, "sim.toml: nested deeper than 32 levels"),
        (b"[simulator]\nseed = " + b"[" * 40 + b"]" * 40, "sim.toml: nested deeper than 32 levels"),
        (
            b"[simulator]\nseed = " + b"9" * 5000,
            "sim.toml: not valid TOML: an integer with thousands of digits",
        ),
        (b"[simulator]\ntick = nan\n", "sim.toml:2: simulator.tick: must be a finite number, not nan"),
        (
            b"[simulator]\nseed = " + b"9" * 30,
            "sim.toml:2: simulator.seed: must be at most 9223372036854775807, not an integer of 30 digits",
        ),
    ],
    ids=["utf8", "nested-5000", "nested-40", "digits-5000", "nan", "int64"],
)
def test_unusable_toml_file_is_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "sim.toml"
    path.write_bytes(content)
    with pytest.raises(SettingsError) as error:
        load_config(path)
    assert str(error.value).startswith(str(tmp_path / message))


def test_only_a_regular_file_of_at_most_a_mebibyte_is_read(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"^{tmp_path}: not a regular file$"):
        load_config(tmp_path)
    big = tmp_path / "big.toml"
    with big.open("wb") as file:
        file.truncate(2 << 20)
    with pytest.raises(SettingsError, match="big.toml: too large: more than 1,048,576 bytes$"):
        load_config(big)


def test_every_problem_of_a_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        "[simulator]\ntick = 5\n[simulator.control]\nport = 99999\n"
        "[simulator.carriers.orange]\ncountry = 'FR'\nport = 3000\nsystem_id = 'echat'\n",
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as error:
        load_config(path)
    assert sorted(str(error.value).splitlines()) == [
        f"{path}:2: simulator.tick: must be at most 1, not 5",
        f"{path}:4: simulator.control.port: must be at most 65535, not 99999",
        f"{path}:5: simulator.carriers.orange.password: is required",
    ]


def test_profile_patch_keeps_what_it_does_not_name() -> None:
    base = default_config().carriers[0]
    patched = base.patched({"tps": 10, "receipts": {"enabled": False}})
    assert patched.tps == 10 and patched.receipts.enabled is False
    assert patched.receipts.statuses == base.receipts.statuses
    assert patched.port == base.port and patched.password == base.password
    assert patched.short_codes == base.short_codes


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("+34612345678", "34612345678"),
        ("0034712345678", "34712345678"),
        ("612 345 678", "34612345678"),
        ("34612345678", "34612345678"),
    ],
)
def test_spanish_msisdns_are_normalized(given: str, normal: str) -> None:
    assert normalize_msisdn(given, "ES") == normal


@pytest.mark.parametrize("bad", ["912345678", "3461234567", "34612345678901", "abc", "+34-6x2345678", ""])
def test_invalid_msisdns_say_what_is_expected(bad: str) -> None:
    with pytest.raises(InvalidMSISDN, match="invalid MSISDN"):
        normalize_msisdn(bad, "ES")


def test_random_msisdns_are_valid_and_distinct() -> None:
    numbers = random_msisdns("ES", 500, random.Random(1))
    assert len(set(numbers)) == 500
    assert all(normalize_msisdn(number, "ES") == number for number in numbers)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatewayd")
    add_simulator_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_flags_override_the_defaults() -> None:
    args = _parse(
        [
            "simulator",
            "--control-port",
            "0",
            "--trace",
            "/tmp/x.jsonl",
            "--trace-dir",
            "/srv/t",
            "--seed",
            "5",
        ]
    )
    config = _config_from_args(args)
    assert config.control_port == 0 and config.trace_path == "/tmp/x.jsonl" and config.seed == 5
    assert config.trace_dir == "/srv/t" and _config_from_args(_parse(["simulator"])).trace_dir == "."
    assert _config_from_args(_parse(["simulator", "--no-api"])).control_port is None


def test_cli_inject_subcommand_arguments() -> None:
    args = _parse(
        [
            "simulator",
            "inject",
            "--carrier",
            "movistar",
            "--from",
            "34600111222",
            "--to",
            "997745",
            "--text",
            "Hola",
            "--order",
            "reverse",
        ]
    )
    assert (args.simulator_action, args.carrier, args.sender, args.short_code) == (
        "inject",
        "movistar",
        "34600111222",
        "997745",
    )
    assert args.order == "reverse" and args.encoding == "auto"
