"""The ``gatewayd`` command behaves the same everywhere, driven as operators drive it (a child process):
``--config`` before or after any command, a database with no schema named as such, the panel's URL
printed, every log line timed, the accounts listed without secrets."""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import pytest

from tests.integration.echat.helpers import Child, gatewayd, write_config

PLAIN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ ")


def migrated(config: Path) -> None:
    finished = gatewayd("migrate", "--config", str(config))
    assert finished.returncode == 0, finished.stderr


# --- --config before or after the command --------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_check_config_and_migrate_take_config_before_or_after(
    where: str, tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(tmp_path, sqlite_url)
    for command in (["check-config"], ["migrate"]):
        argv = (
            ["--config", str(config), *command] if where == "before" else [*command, "--config", str(config)]
        )
        finished = gatewayd(*argv)
        assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "echat.db").exists()  # the configured database, not the demo's


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "{config}", "send", "600111222", "hola"],
        ["send", "--config", "{config}", "600111222", "hola"],
        ["send", "600111222", "hola", "--config", "{config}"],
    ],
    ids=["before", "after", "last"],
)
def test_send_takes_config_anywhere(argv: list[str], tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    migrated(config)
    finished = gatewayd(*(part.format(config=config) for part in argv))
    assert (finished.returncode, finished.stdout.strip()) == (0, "MT 1 queued"), finished.stderr


def test_every_user_command_takes_config_after_itself(tmp_path: Path, sqlite_url: str) -> None:
    """The issue's case: ``gatewayd user add ana --role operator --config gw.toml``."""
    config = str(write_config(tmp_path, sqlite_url))
    migrated(Path(config))
    password = "a good long password\n"
    added = gatewayd(
        "user", "add", "ana", "--role", "operator", "--password-stdin", "--config", config, input=password
    )
    assert added.returncode == 0, added.stderr
    assert "account 'ana' created" in added.stdout
    steps = [
        (["user", "passwd", "ana", "--password-stdin", "--config", config], "password of 'ana' changed"),
        (["user", "lock", "ana", "--config", config], "account 'ana' locked"),
        (["user", "--config", config, "unlock", "ana"], "account 'ana' unlocked"),
        (["--config", config, "user", "list"], "ana"),
        (["user", "list", "-c", config], "ana"),
    ]
    for argv, answer in steps:
        finished = gatewayd(*argv, input=password)
        assert finished.returncode == 0, (argv, finished.stderr)
        assert answer in finished.stdout, argv


@pytest.mark.parametrize("where", ["before", "after"])
def test_run_reads_config_before_or_after(where: str, tmp_path: Path, sqlite_url: str) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    argv = ["--config", config, "run"] if where == "before" else ["run", "--config", config]
    finished = gatewayd(*argv)  # the configured database has no schema yet: refused, naming migrate
    assert finished.returncode == 1
    assert "run `gatewayd migrate` first" in finished.stderr


def test_the_simulator_reads_a_config_given_before_it(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text('[simulator]\ncontrol = "nowhere"\n', encoding="utf-8")
    finished = gatewayd("--config", str(config), "simulator")
    assert finished.returncode == 2
    assert str(config) in finished.stderr and "Traceback" not in finished.stderr


def test_the_demo_refuses_a_config_it_would_not_read(tmp_path: Path, sqlite_url: str) -> None:
    finished = gatewayd("--config", str(write_config(tmp_path, sqlite_url)), "demo")
    assert finished.returncode == 2
    assert "takes no --config" in finished.stderr


# --- a database with no schema ---------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_send_to_a_database_with_no_schema_names_migrate(
    store: str, tmp_path: Path, sqlite_url: str, pg_url: str
) -> None:
    config = write_config(tmp_path, sqlite_url if store == "sqlite" else pg_url)
    finished = gatewayd("send", "600111222", "hola", "--config", str(config))
    assert finished.returncode == 1
    assert "no revision (empty database)" in finished.stderr
    assert "run `gatewayd migrate` first" in finished.stderr
    assert "Traceback" not in finished.stderr and finished.stdout == ""


def test_user_commands_on_a_database_with_no_schema_name_migrate(tmp_path: Path, sqlite_url: str) -> None:
    finished = gatewayd("user", "list", "--config", str(write_config(tmp_path, sqlite_url)))
    assert finished.returncode == 1
    assert "gatewayd user list:" in finished.stderr and "`gatewayd migrate`" in finished.stderr
    assert "Traceback" not in finished.stderr


# --- gatewayd panel prints its URL; every log line is timed ---------------------------------------


def test_the_panel_prints_where_it_listens(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url, panel_listen="127.0.0.1:0")
    migrated(config)
    with Child("panel", "--config", str(config)) as panel:
        line = panel.stdout.next()
        found = re.fullmatch(
            r"panel on http://127\.0\.0\.1:(\d+)/ \(public URL http://127\.0\.0\.1:8080\)", line
        )
        assert found is not None, line
        with socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5) as connection:
            connection.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert connection.recv(64).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("json_lines", [False, True], ids=["plain", "json"])
def test_every_line_the_daemon_logs_carries_its_time(
    json_lines: bool, tmp_path: Path, sqlite_url: str
) -> None:
    """uvicorn's own lines (the metrics server refusing a malformed request) included: they used to go
    through uvicorn's formatter, which writes no time."""
    config = write_config(tmp_path, sqlite_url, metrics_listen="127.0.0.1:0", log_json=json_lines)
    migrated(config)
    with Child("run", "--config", str(config)) as daemon:
        log = daemon.stderr
        found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", log.until("/metrics"))
        assert found is not None
        with socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            connection.recv(1024)
        log.until("Invalid HTTP request")
        daemon.process.send_signal(signal.SIGTERM)
        lines = log.rest()
    assert len(lines) > 3
    for line in lines:
        if json_lines:
            document = json.loads(line)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["ts"]), line
        else:
            assert PLAIN_LINE.match(line), line


def test_every_line_the_simulator_logs_carries_its_time(tmp_path: Path) -> None:
    """Its control API's uvicorn used to install uvicorn's own handlers (no time on its lines), and the
    simulator's command set up no logging at all."""
    config = tmp_path / "sim.toml"
    config.write_text(
        '[simulator.control]\nhost = "127.0.0.1"\nport = 0\n'
        '[simulator.carriers.movistar]\ncountry = "ES"\nhost = "127.0.0.1"\nport = 0\n'
        'system_id = "echat"\npassword = "secret1"\nshort_codes = ["997745"]\n',
        encoding="utf-8",
    )
    with Child("simulator", "--config", str(config)) as simulator:
        found = re.search(r"http://127\.0\.0\.1:(\d+)", simulator.stdout.until("control API on"))
        assert found is not None
        with socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            connection.recv(1024)
        simulator.stderr.until("Invalid HTTP request")
        simulator.process.send_signal(signal.SIGTERM)
        lines = simulator.stderr.rest()
    for line in lines:
        assert PLAIN_LINE.match(line), line


# --- gatewayd user list ------------------------------------------------------------------------------


def test_user_list_shows_names_roles_presence_locks_and_sign_ins_but_no_secret(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    migrated(Path(config))
    password = "a good long password\n"
    for name, role in (("marta", "master"), ("oscar", "operator")):
        added = gatewayd(
            "user", "add", name, "--role", role, "--password-stdin", "--config", config, input=password
        )
        assert added.returncode == 0, added.stderr
    assert gatewayd("user", "lock", "oscar", "--reason", "holiday", "--config", config).returncode == 0
    listed = gatewayd("user", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["USER", "ROLE", "PRESENCE", "LOCKED", "POOLS", "LAST", "SIGN-IN", "(UTC)"]
    assert [row.split() for row in rows] == [
        ["marta", "master", "offline", "no", "(default)", "never"],
        ["oscar", "operator", "offline", "yes", "(default)", "never"],
    ]
    assert "$argon2" not in listed.stdout and "holiday" not in listed.stdout


# --- gatewayd user add --pool, gatewayd user pools -----------------------------------------------------

POOL_ROUTES = """
[[services]]
name = "chat"
short_code = "997745"
operator_pool = "chat-team"

[[routes.mo]]
name = "tarot"
short_code = "997745"
keyword = "TAROT"
service = "tarot"
operator_pool = "tarot-team"
"""


def _pools_column(config: str) -> dict[str, str]:
    listed = gatewayd("user", "list", "--config", config)
    assert listed.returncode == 0, listed.stderr
    return {row.split()[0]: row.split()[4] for row in listed.stdout.splitlines()[1:]}


def test_operators_get_their_pools_from_the_command_line(tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path, sqlite_url)
    path.write_text(path.read_text(encoding="utf-8") + POOL_ROUTES, encoding="utf-8")
    config = str(path)
    migrated(path)
    password = "a good long password\n"
    added = gatewayd(
        "user", "add", "olga", "--pool", "tarot-team", "--pool", "chat-team", "--password-stdin",
        "--config", config, input=password,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "answers the pool(s) 'chat-team', 'tarot-team'" in added.stdout
    assert added.stderr == ""  # both pools are routed
    plain = gatewayd("user", "add", "otto", "--password-stdin", "--config", config, input=password)
    assert plain.returncode == 0 and "in no pool: answers the pool 'default'" in plain.stdout
    assert _pools_column(config) == {"olga": "chat-team,tarot-team", "otto": "(default)"}

    shown = gatewayd("user", "pools", "olga", "--config", config)
    assert shown.returncode == 0 and "'olga' answers the pool(s) 'chat-team', 'tarot-team'" in shown.stdout
    moved = gatewayd("user", "pools", "otto", "tarot-team", "--config", config)
    assert moved.returncode == 0 and "'otto' answers the pool(s) 'tarot-team'" in moved.stdout
    cleared = gatewayd("user", "pools", "olga", "--none", "--config", config)
    assert cleared.returncode == 0 and "in no pool" in cleared.stdout
    assert _pools_column(config) == {"olga": "(default)", "otto": "tarot-team"}

    # a pool no route gives is set, with a warning: no conversation would ever be offered there
    typo = gatewayd("user", "pools", "otto", "tarot-teem", "--config", config)
    assert typo.returncode == 0
    assert "warning" in typo.stderr and "'tarot-teem'" in typo.stderr
    both = gatewayd("user", "pools", "otto", "x", "--none", "--config", config)
    assert both.returncode == 1 and "not both" in both.stderr
    too_long = gatewayd("user", "pools", "otto", "p" * 65, "--config", config)
    assert too_long.returncode == 1 and "1 to 64 characters" in too_long.stderr
    ghost = gatewayd("user", "pools", "ghost", "x", "--config", config)
    assert ghost.returncode == 1 and "no account named 'ghost'" in ghost.stderr
    assert _pools_column(config) == {"olga": "(default)", "otto": "tarot-teem"}
