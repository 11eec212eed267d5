"""systemd ``Type=notify`` support over ``$NOTIFY_SOCKET`` with a plain datagram socket.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op, so the daemon calls it
unconditionally.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class SystemdNotifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` and ``STATUS=...`` to the service manager."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        watchdog_pid = env.get("WATCHDOG_PID")
        if env.get("WATCHDOG_USEC") and (watchdog_pid is None or watchdog_pid == str(os.getpid())):
            try:
                watchdog_usec = int(env["WATCHDOG_USEC"])
            except ValueError:
                watchdog_usec = None
        return cls(address, watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the configured timeout, or ``None`` when disabled."""
        if not self._watchdog_usec or not self.enabled:
            return None
        return self._watchdog_usec / 2_000_000

    def _target(self) -> str | bytes:
        assert self._address is not None
        # '@' names a socket in the Linux abstract namespace
        return b"\0" + self._address[1:].encode() if self._address.startswith("@") else self._address

    def notify(self, state: str) -> bool:
        """Send one state string; returns whether it was sent (never raises: systemd is advisory)."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(state.encode(), self._target())
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
