"""Settings of the panel, one frozen object built once from the daemon's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost; raising it makes every stored hash be rehashed at its next successful login."""

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4


@dataclass(frozen=True, slots=True)
class PanelSettings:
    database_url: str
    bus_url: str = "memory://"
    host: str = "127.0.0.1"
    port: int = 8080
    # Cookies carry Secure unless the panel is served over plain HTTP on purpose (local demo).
    secure_cookies: bool = True
    session_cookie: str = "echat_session"
    session_idle_minutes: int = 120
    session_lifetime_hours: int = 12
    max_failed_logins: int = 5
    lock_minutes: int = 15
    ip_max_failures: int = 20
    ip_window_minutes: int = 10
    # Extra origins accepted on unsafe requests besides the panel's own (e.g. behind a TLS proxy).
    trusted_origins: tuple[str, ...] = ()
    default_language: str = "es"
    default_timezone: str = "Europe/Madrid"
    argon2: Argon2Params = field(default_factory=Argon2Params)
    max_body_bytes: int = 10 * 1024 * 1024
    # None: every plugin of the `echat.plugins` entry-point group; else "module:attribute" references.
    plugins: tuple[str, ...] | None = None
