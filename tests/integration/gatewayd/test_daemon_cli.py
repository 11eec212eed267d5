"""``gatewayd`` commands an operator types: check-config, migrate, send, run on a stale schema."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from echat.cli import main
from gatewayd.store.engine import create_engine, session_factory
from gatewayd.store.enums import MTStatus
from gatewayd.store.messages import MTMessage

GOOD = """
[database]
url = "{url}"

[[carriers]]
name = "movistar"
country = "ES"
short_codes = ["997745"]
system_id = "echat"
password = "secret1"

[[carriers.binds]]
host = "127.0.0.1"
port = 2775
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gatewayd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_accepts_a_good_file(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.format(url=sqlite_url))
    assert main(["check-config", "--config", str(path)]) == 0
    output = capsys.readouterr().out
    assert "ok (1 carrier(s), 1 bind(s)" in output
    assert "secret1" not in output


def test_check_config_names_every_bad_key_with_file_and_line(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.format(url=sqlite_url).replace("port = 2775", "port = 99999")
    text = text.replace('country = "ES"', 'country = "Spain"')
    path = write(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    lines = text.splitlines()
    port_line = lines.index("port = 99999") + 1
    country_line = lines.index('country = "Spain"') + 1
    assert f"{path}:{port_line}: carriers[0].binds[0].port" in error
    assert f"{path}:{country_line}: carriers[0].country" in error


def test_check_config_refuses_nan_and_infinity(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.format(url=sqlite_url) + "\n[daemon]\nmt_claim_lease = nan\n"
    text = text.replace("port = 2775", "port = 2775\ntps = inf")
    path = write(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    lines = text.splitlines()
    assert (
        f"{path}:{lines.index('tps = inf') + 1}: carriers[0].binds[0].tps: must be a finite number" in error
    )
    lease_line = lines.index("mt_claim_lease = nan") + 1
    assert f"{path}:{lease_line}: daemon.mt_claim_lease: must be a finite number, not nan" in error


def test_check_config_gives_one_line_for_a_file_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "latin1.toml": (
            b'[log]\nlevel = "INFO" # caf\xe9\n',
            ":2: <file>: not valid UTF-8: byte 0xe9 at byte offset",
        ),
        "deep.toml": (b"x = " + b"[" * 5000 + b"]" * 5000, ": <file>: nested deeper than 32 levels"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["check-config", "--config", str(path)]) == 2
        error = capsys.readouterr().err
        assert f"  {path}{message}" in error and "Traceback" not in error


def run_gatewayd(*argv: str) -> subprocess.CompletedProcess[str]:
    """``gatewayd`` in a child process whose address space is capped (a reader that slurps /dev/zero
    fails there, not on the machine) and with a deadline (one that blocks on a FIFO fails the test)."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    command = [sys.executable, "-m", "echat", *argv]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, preexec_fn=cap_memory, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    "command",
    [
        ["check-config", "--config", "/dev/zero"],
        ["run", "--config", "/dev/zero"],
        ["migrate", "--config", "/dev/zero"],
        ["send", "--config", "/dev/zero", "600111222", "hola"],
        ["panel", "--config", "/dev/zero"],
        ["user", "--config", "/dev/zero", "add", "ana"],
        ["simulator", "--config", "/dev/zero"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_refuses_a_device_as_its_configuration(command: list[str]) -> None:
    finished = run_gatewayd(*command)
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.count("/dev/zero") == 1 and "not a regular file" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_fifo_as_configuration_or_secret_file_is_refused_without_blocking(
    tmp_path: Path, sqlite_url: str
) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    finished = run_gatewayd("check-config", "--config", str(fifo))
    assert (finished.returncode, finished.stderr.splitlines()[-1].strip()) == (
        2,
        f"{fifo}: <file>: not a regular file",
    )
    text = GOOD.format(url=sqlite_url).replace('password = "secret1"', f'password_file = "{fifo}"')
    finished = run_gatewayd("check-config", "--config", str(write(tmp_path, text)))
    assert finished.returncode == 2 and f"{fifo}: not a regular file" in finished.stderr


def test_migrate_then_send_queues_an_mt(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.format(url=sqlite_url))
    assert main(["migrate", "--config", str(path)]) == 0
    assert "is at revision" in capsys.readouterr().out
    assert main(["send", "--config", str(path), "600111222", "Hola, prueba de ruta"]) == 0
    assert "MT 1 queued" in capsys.readouterr().out

    async def stored() -> tuple[str, str, str, MTStatus]:
        engine = create_engine(sqlite_url)
        try:
            async with session_factory(engine)() as session:
                mt = (await session.execute(select(MTMessage))).scalar_one()
                return mt.carrier, mt.source, mt.destination, mt.status
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == ("movistar", "997745", "34600111222", MTStatus.QUEUED)


def test_send_says_when_a_push_is_held_for_quiet_hours(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ends = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    hours = f"{(ends.hour - 3) % 24:02d}:00-{ends:%H}:00"  # from an hour before now to two after
    quiet = f'[daemon]\ntimezone = "UTC"\n\n[quiet_hours]\ndefault = "{hours}"\n'
    path = write(tmp_path, quiet + GOOD.format(url=sqlite_url))
    assert main(["migrate", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["send", "--config", str(path), "600111222", "Hola"]) == 0
    assert capsys.readouterr().out == (
        f"MT 1 queued, held for quiet hours until {ends:%Y-%m-%d %H:%M} UTC ({ends:%H:%M} UTC)\n"
    )
    # --wait does not wait hours for it (nor blame the daemon when its time-out ends): it says why
    assert main(["send", "--config", str(path), "600111222", "Hola", "--wait", "--timeout", "60"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("MT 2 queued, held for quiet hours until ")
    assert err == "MT 2: held for the client's quiet hours, not waiting for it\n"


def test_send_refuses_an_unknown_carrier(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.format(url=sqlite_url))
    assert main(["migrate", "--config", str(path)]) == 0
    assert main(["send", "--config", str(path), "+34600111222", "hola", "--carrier", "orange"]) == 1
    assert "unknown carrier 'orange' (configured: movistar)" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """Every command installs its own log handler; give pytest its handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_run_refuses_a_database_that_is_behind(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.format(url=sqlite_url))
    assert main(["run", "--config", str(path)]) == 1
    assert "gatewayd migrate" in capsys.readouterr().err


def test_check_config_checks_the_simulator_table_with_the_rest(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon leaves ``[simulator]`` to ``gatewayd simulator``; check-config names its mistakes
    with their lines, together with the daemon's own."""
    good = GOOD.format(url=sqlite_url) + '\n[simulator]\ncontrol = { host = "127.0.0.1", port = 8025 }\n'
    assert main(["check-config", "--config", str(write(tmp_path, good))]) == 0
    capsys.readouterr()
    text = GOOD.format(url=sqlite_url).replace("port = 2775", "port = 99999")
    text += '\n[simulator]\ntick = 5\n[simulator.carriers.orange]\ncountry = "FR"\nport = 3000\n'
    path = write(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    lines = text.splitlines()
    assert (
        f"{path}:{lines.index('port = 99999') + 1}: carriers[0].binds[0].port: must be at most 65535" in error
    )
    assert f"{path}:{lines.index('tick = 5') + 1}: simulator.tick: must be at most 1, not 5" in error
    orange = lines.index("[simulator.carriers.orange]") + 1
    assert f"{path}:{orange}: simulator.carriers.orange.system_id: is required" in error
