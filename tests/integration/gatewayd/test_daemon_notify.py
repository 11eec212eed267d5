"""systemd notifications reach a real datagram socket (what systemd listens on)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gatewayd.notify import SystemdNotifier


def test_ready_watchdog_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(os.fspath(path))
        listener.settimeout(2)
        notifier = SystemdNotifier.from_environment(
            {"NOTIFY_SOCKET": os.fspath(path), "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert notifier.enabled
        assert notifier.watchdog_interval == 10.0
        assert notifier.ready(status="2 binds up")
        assert notifier.watchdog()
        assert notifier.stopping()
        notifier.close()
        assert listener.recv(256) == b"READY=1\nSTATUS=2 binds up"
        assert listener.recv(256) == b"WATCHDOG=1"
        assert listener.recv(256) == b"STOPPING=1"


def test_abstract_namespace_socket() -> None:
    name = f"echat-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(b"\0" + name.encode())
        listener.settimeout(2)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        notifier.close()
        assert listener.recv(64) == b"READY=1"


def test_without_systemd_everything_is_a_no_op(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready()


def test_watchdog_for_another_pid_is_ignored() -> None:
    notifier = SystemdNotifier.from_environment(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval is None or os.getpid() == 1
    assert not notifier.ready()  # a socket that does not exist: reported, never raised
    notifier.close()
