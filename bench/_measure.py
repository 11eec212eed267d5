"""CPU time of other processes, read from /proc, for the benchmarks that run the daemon, the SMSC and
PostgreSQL as separate processes.

``/proc/<pid>/stat`` counts in clock ticks (usually 10 ms): read it around runs of a second or more.
PostgreSQL backends are told apart by their process title (``postgres: <user> <database> ...``,
``update_process_title`` is on by default), so a benchmark counts the backends of its own scratch
database and not those of other users of the same server.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: PostgreSQL's own background processes, shared by every database of the server.
PG_AUXILIARY = ("checkpointer", "background writer", "walwriter", "autovacuum launcher")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far; 0.0 once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # the command name (field 2) may hold spaces and parentheses: fields count from the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far (everything but idle and I/O wait), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``pid`` so far."""
    voluntary = involuntary = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return voluntary, involuntary


def _titles() -> dict[int, str]:
    """The command line of every process, as ``ps`` shows it."""
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        titles[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return titles


def postgres_backends(database: str) -> set[int]:
    """Backends (and autovacuum workers) connected to ``database``."""
    return {
        pid
        for pid, title in _titles().items()
        if title.startswith("postgres:") and f" {database} " in f"{title} "
    }


def postgres_auxiliary() -> set[int]:
    """The server's background processes (WAL writer, checkpointer, ...)."""
    return {
        pid
        for pid, title in _titles().items()
        if title.startswith("postgres:") and title.rstrip().endswith(PG_AUXILIARY)
    }


def pids_named(name: str) -> set[int]:
    """Processes whose executable's base name is ``name`` (e.g. ``mosquitto``)."""
    found: set[int] = set()
    for pid, title in _titles().items():
        executable = title.split(" ", 1)[0]
        if executable.rsplit("/", 1)[-1] == name:
            found.add(pid)
    return found


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` to ``port`` on any address (a daemon's binds to an SMSC):
    the sockets among its open files whose remote port is ``port`` in /proc/net/tcp and tcp6."""
    sockets: set[str] = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except (FileNotFoundError, ProcessLookupError):  # closed meanwhile
            continue
        if target.startswith("socket:["):
            sockets.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port and inode in sockets:
                count += 1
    return count


@dataclass(frozen=True, slots=True)
class CPUSnapshot:
    """CPU seconds of named groups of processes at one moment."""

    seconds: Mapping[str, Mapping[int, float]]

    @classmethod
    def take(cls, groups: Mapping[str, Iterable[int]]) -> CPUSnapshot:
        return cls({name: {pid: process_cpu(pid) for pid in pids} for name, pids in groups.items()})

    def since(self, earlier: CPUSnapshot) -> dict[str, float]:
        """CPU seconds each group used between ``earlier`` and this snapshot. A process that appeared
        meanwhile counts whole (it started after ``earlier``); one that ended meanwhile is lost."""
        used: dict[str, float] = {}
        for name, now in self.seconds.items():
            before = earlier.seconds.get(name, {})
            used[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())
        return used
