"""Private services for the chaos test: a PostgreSQL cluster (``initdb`` + ``pg_ctl``) and a Mosquitto
broker (``mosquitto -c``) on ports of their own, and child processes with their logs, so that killing
or restarting any of them disturbs nothing else on the machine (the shared PostgreSQL and Mosquitto
of the other tests are never touched)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

#: initdb and the server refuse to run as root: as root, PostgreSQL runs as this user.
POSTGRES_USER = "postgres"


def free_port(candidates: Iterator[int]) -> int:
    """The next port of ``candidates`` nothing listens on (nor is bound) on 127.0.0.1 (those passed
    over are used up: each call returns another port)."""
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left to probe")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Child:
    """A long-running child process in its own process group, its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        with open(self.log, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def stop(self, signum: int = signal.SIGTERM, within: float = 20.0) -> int | None:
        """Send ``signum`` and wait for the exit (SIGKILL after ``within`` seconds); the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                return await asyncio.wait_for(asyncio.to_thread(process.wait), within)
            except TimeoutError:
                self.kill_now()
        return process.wait()

    def kill_now(self) -> None:
        """SIGKILL the whole process group at once (clean-up, whatever state the test is in)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""


class PrivatePostgres:
    """A throw-away PostgreSQL cluster of our own: ``initdb`` in a temporary directory, ``pg_ctl`` to
    start, restart (``-m fast``) and stop it. Trust authentication on 127.0.0.1 only."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.log = directory / "postgresql.log"
        self.port = port
        self._user = POSTGRES_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        finished = subprocess.run(
            list(argv), user=self._user, capture_output=True, text=True, timeout=120, cwd=self.directory
        )
        if finished.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({finished.returncode}): {finished.stderr.strip()}")

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.directory, self.sockets):
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.sockets}'\nmax_connections = 300\n"
            "shared_buffers = 64MB\n"
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(options)

    def _pg_ctl(self, *argv: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *argv)

    def start(self) -> None:
        self._pg_ctl("start")

    async def restart(self) -> None:
        await asyncio.to_thread(self._pg_ctl, "restart", "-m", "fast")

    def stop(self) -> None:
        """Immediate stop (clean-up); nothing if it is not running."""
        if (self.data / "postmaster.pid").exists():
            try:
                self._pg_ctl("stop", "-m", "immediate")
            except RuntimeError:
                pass


class PrivateMosquitto(Child):
    """A Mosquitto broker of our own on 127.0.0.1, without persistence."""

    def __init__(self, directory: Path, port: int) -> None:
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n",
            encoding="utf-8",
        )
        super().__init__("mosquitto", ["mosquitto", "-c", str(conf)], directory / "mosquitto.log")
        self.port = port

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"
