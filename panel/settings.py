"""Settings of the panel, one frozen object built once from the daemon's configuration."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from pydantic import SecretStr

from gatewayd.assignment import SESSION_IDLE_MINUTES
from gatewayd.outbox import OutboxSettings

# Secure cookies carry this prefix: the browser then accepts them only with Secure, Path=/ and no
# Domain, so a sibling site (or plain-HTTP page) of the same domain cannot plant them.
SECURE_COOKIE_PREFIX = "__Host-"
SESSION_COOKIE = "echat_session"


def default_hash_workers(cores: int | None) -> int:
    """Half the machine's cores for argon2, at least one."""
    return max(1, (cores or 1) // 2)


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
    # Cookies carry Secure (and the __Host- prefix) unless the panel is served over plain HTTP on
    # purpose (the local demo): `[panel] public_url` decides (see `panel.serve.settings_from_config`).
    secure_cookies: bool = True
    # Signs the anonymous CSRF token (the sign-in form's); a random one when not configured.
    secret_key: SecretStr = field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)), repr=False)
    session_idle_minutes: int = SESSION_IDLE_MINUTES
    # The configuration's [assignment] presence_grace and sweep_interval (seconds), which the desk's
    # assignment then uses as the daemon does; None: the desk plugin's own policy.
    presence_grace_seconds: float | None = None
    assignment_sweep_seconds: float | None = None
    # The configuration's [assignment] callcentre_pool; None: the desk plugin's own policy.
    callcentre_pool: str | None = None
    session_lifetime_hours: int = 12
    # Failed sign-ins per user name (known or not) answered at once; each further one doubles a
    # wait before the next try, from login_delay_seconds up to login_delay_max_seconds. Failures
    # older than login_failure_window_minutes are forgotten.
    login_free_failures: int = 3
    login_delay_seconds: float = 1.0
    login_delay_max_seconds: float = 60.0
    login_failure_window_minutes: int = 15
    ip_max_failures: int = 20
    ip_window_minutes: int = 10
    # A refusal that costs no hashing (address rate limited, name delayed, hashing workers busy) is
    # answered after this pause, at most its Retry-After: a client repeating refused attempts back
    # to back is paced to one per pause per connection instead of taking the event loop's time.
    refusal_pause_seconds: float = 2.0
    # argon2 runs in this many worker threads (by default one core in two, at least one: the
    # daemon sharing the machine keeps a core under a flood of sign-ins); this many more sign-ins
    # may wait for one, the rest are answered 503 after the refusal pause.
    password_hash_workers: int = field(default_factory=lambda: default_hash_workers(os.cpu_count()))
    password_hash_queue: int = 16
    # Extra origins accepted on unsafe requests besides the panel's own (e.g. behind a TLS proxy).
    trusted_origins: tuple[str, ...] = ()
    default_language: str = "es"
    default_timezone: str = "Europe/Madrid"
    argon2: Argon2Params = field(default_factory=Argon2Params)
    # Every unsafe request: at most this many body bytes, form fields, uploaded files and bytes per part.
    max_body_bytes: int = 10 * 1024 * 1024
    max_form_fields: int = 50
    max_form_files: int = 0
    max_form_part_bytes: int = 1024 * 1024
    # None: every plugin of the `echat.plugins` entry-point group; else "module:attribute" references.
    plugins: tuple[str, ...] | None = None
    # The origin people reach the panel at (`[panel] public_url`): the photo gallery's public links.
    public_url: str | None = None
    # The photo gallery: where its files are, and "host:port" pairs a URL import may fetch from although
    # they are loopback or private addresses (`[panel] gallery_dir`, `gallery_fetch_allow`).
    gallery_dir: str = "var/gallery"
    gallery_fetch_allow: tuple[str, ...] = ()
    # "host:port" webhook targets a subscription may have although local or private (`[webhooks] allow`).
    webhooks_allow: tuple[str, ...] = ()
    # Carriers and services (their time zones) for the MTs the panel queues through the outbox.
    outbox: OutboxSettings = field(default_factory=OutboxSettings)

    def cookie_name(self, name: str) -> str:
        """The name a panel cookie is sent under: prefixed with __Host- when cookies are Secure."""
        return f"{SECURE_COOKIE_PREFIX}{name}" if self.secure_cookies else name

    @property
    def session_cookie(self) -> str:
        return self.cookie_name(SESSION_COOKIE)
