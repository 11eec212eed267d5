"""The daemon's configuration: one TOML file plus ``GATEWAYD_*`` environment overrides, parsed once.

``load_config(path, environ)`` reads the file (or, with no file, the built-in demo set-up), applies the
environment overrides, validates everything and returns a tree of frozen dataclasses. Validation never
stops at the first problem: :class:`ConfigError` lists every one, each naming the key path and where the
value came from (``file:line`` or the environment variable).

Environment overrides: ``GATEWAYD_<SECTION>_<KEY>`` for plain sections (``GATEWAYD_DATABASE_URL``,
``GATEWAYD_LOG_LEVEL``, ``GATEWAYD_DAEMON_MT_RETRY_LIMIT``) and ``__``-separated paths for nested ones,
where an array-of-tables element is picked by its ``name`` or by its index
(``GATEWAYD_CARRIERS__MOVISTAR__PASSWORD``, ``GATEWAYD_CARRIERS__MOVISTAR__BINDS__0__PORT``,
``GATEWAYD_KEYWORDS__ES__OPT_OUT=BAJA,STOP``). Lists are comma-separated. A carrier-level
``system_id`` / ``password`` / ``password_file`` given in the environment also replaces the one of each
of that carrier's binds: the environment is the operator's last word.

Secrets (bind passwords, the panel's secret key) are :class:`Secret` objects whose ``repr``/``str`` is
``***``; ``*_file`` variants are read at load time. URLs keep their password out of ``repr``.

The file and the secret files it names are read by :func:`simulator.settings.read_text_file` (the
simulator reads its ``[simulator]`` table under the same rules): a regular file of at most 1 MiB of
UTF-8; anything else is one clear problem, never a traceback or a hang.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from routing.errors import InvalidRule
from routing.rules import MORoute, MTRoute
from simulator.profiles import parse_config
from simulator.settings import FileProblem, SettingsError, read_text_file, read_toml_file

ENV_PREFIX: Final = "GATEWAYD_"
DEMO_SOURCE: Final = "<built-in demo configuration>"
REDACTED: Final = "***"

KeyPath = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------------


class Secret:
    """A secret string: ``repr``/``str`` print ``***``; call :meth:`reveal` where the value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{netloc[-1]}"))


class BindType(StrEnum):
    TRANSCEIVER = "transceiver"
    RECEIVER = "receiver"
    TRANSMITTER = "transmitter"


class LongMessageMode(StrEnum):
    """How a carrier wants long MTs: concatenation UDH with 8- or 16-bit reference, SAR TLVs, or one
    ``message_payload`` TLV."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """``url`` is an SQLAlchemy async URL (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``)."""

    url: str = field(repr=False)
    pool_size: int = 10
    max_overflow: int = 10

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"DatabaseConfig(url={self.redacted_url!r}, pool_size={self.pool_size}, "
            f"max_overflow={self.max_overflow})"
        )


@dataclass(frozen=True, slots=True)
class BusConfig:
    """``url`` is ``memory://`` or ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS)."""

    url: str = field(repr=False)
    topic_prefix: str = "echat"
    client_id: str = ""
    buffer_size: int = 10_000

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"BusConfig(url={self.redacted_url!r}, topic_prefix={self.topic_prefix!r}, "
            f"client_id={self.client_id!r}, buffer_size={self.buffer_size})"
        )


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True, slots=True)
class HTTPServerConfig:
    """An HTTP endpoint's defences against slow and too many clients (``gatewayd.webserver``):
    ``max_connections`` open at once (also kept under the open-files limit); ``header_timeout``
    seconds for a request's headers to arrive whole, and at most between two pieces of its body;
    ``keep_alive_timeout`` seconds an idle connection stays open; ``forwarded_allow_ips`` the proxies
    (addresses or networks) whose ``X-Forwarded-For`` / ``-Proto`` are believed (none: the peer's
    address is the client's)."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    forwarded_allow_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    listen: ListenAddress = ListenAddress("127.0.0.1", 9105)
    # Prometheus scrapes over one or two connections.
    http: HTTPServerConfig = HTTPServerConfig(max_connections=64)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """What ``/healthz`` calls healthy: at least ``min_binds_up`` binds up for every carrier and an
    outbox no deeper than ``max_outbox_depth``."""

    min_binds_up: int = 1
    max_outbox_depth: int = 100_000


@dataclass(frozen=True, slots=True)
class PanelConfig:
    """``secret_key_ephemeral`` is true when no key was configured and a random one was made: sign-in
    forms then expire at a restart and are not shared between instances. ``public_url`` is the origin
    people reach the panel at (``https://chat.example.com``, behind a TLS proxy); None means HTTPS
    somewhere we cannot see: cookies are Secure unless it is an ``http://`` URL."""

    listen: ListenAddress = ListenAddress("127.0.0.1", 8080)
    secret_key: Secret = field(default_factory=lambda: Secret(secrets.token_urlsafe(32)))
    secret_key_ephemeral: bool = True
    public_url: str | None = None
    http: HTTPServerConfig = HTTPServerConfig()

    @property
    def secure(self) -> bool:
        """Whether browsers reach the panel over HTTPS: Secure cookies, HSTS."""
        return self.public_url is None or self.public_url.startswith("https://")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Durations are seconds. ``timezone`` renders the manual's ``hora``/``fecha`` variables."""

    instance: str
    timezone: str = "Europe/Madrid"
    group_commit_max_batch: int = 2000
    group_commit_max_delay: float = 0.0
    mt_claim_batch: int = 500
    mt_claim_lease: float = 60.0
    mt_retry_limit: int = 5
    mt_retry_backoff_initial: float = 5.0
    mt_retry_backoff_max: float = 300.0
    reassembly_timeout: float = 120.0
    mo_answer_deadline: float = 5.0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class BindConfig:
    """One configured bind; ``count`` identical sessions are opened (named ``{name}#{k}`` by the
    supervisor when ``count`` > 1)."""

    name: str
    host: str
    port: int
    system_id: str
    password: Secret
    bind_type: BindType = BindType.TRANSCEIVER
    system_type: str = ""
    address_range: str = ""
    tls: bool = False
    tls_ca_file: Path | None = None
    count: int = 1
    window: int = 10
    tps: float = 100.0
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0

    @property
    def can_send(self) -> bool:
        return self.bind_type is not BindType.RECEIVER

    @property
    def can_receive(self) -> bool:
        return self.bind_type is not BindType.TRANSMITTER


@dataclass(frozen=True, slots=True)
class CarrierConfig:
    """A mobile carrier. ``quirks`` is handed untouched to ``routing`` (a read-only mapping)."""

    name: str
    country: str
    short_codes: tuple[str, ...]
    binds: tuple[BindConfig, ...]
    allow_latin1: bool = False
    long_message: LongMessageMode = LongMessageMode.UDH8
    quirks: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A chat service on a short code, optionally only for MOs starting with ``keyword``."""

    name: str
    short_code: str
    keyword: str | None = None
    operator_pool: str = "default"
    callcentre: bool = False


@dataclass(frozen=True, slots=True)
class RoutesConfig:
    """Explicit routing rules (``[[routes.mo]]`` / ``[[routes.mt]]``), validated by ``routing``.

    MO rules are tried before the rules made from ``[[services]]``; a table without a rule marked
    ``default = true`` gets the built-in default route (see ``gatewayd.routes``)."""

    mo: tuple[MORoute, ...] = ()
    mt: tuple[MTRoute, ...] = ()


@dataclass(frozen=True, slots=True)
class ReservedKeywords:
    """Keywords reserved in one country; matched case-insensitively on the MO's first word."""

    opt_out: tuple[str, ...] = ()
    opt_in: tuple[str, ...] = ()
    help: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``source`` is the file read, or None for the built-in demo."""

    source: Path | None
    database: DatabaseConfig
    bus: BusConfig
    log: LogConfig
    metrics: MetricsConfig
    health: HealthConfig
    panel: PanelConfig
    daemon: DaemonConfig
    carriers: tuple[CarrierConfig, ...]
    services: tuple[ServiceConfig, ...]
    keywords: Mapping[str, ReservedKeywords]
    routes: RoutesConfig = RoutesConfig()

    def carrier(self, name: str) -> CarrierConfig:
        """The carrier called ``name``; KeyError if there is none."""
        for carrier in self.carriers:
            if carrier.name == name:
                return carrier
        raise KeyError(name)

    def reserved_keywords(self, country: str) -> ReservedKeywords:
        return self.keywords.get(country.upper(), ReservedKeywords())


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One invalid or missing value: ``key`` like ``carriers[0].binds[1].port``; ``source`` is a file
    path (then ``line`` is set, 1-based) or ``$GATEWAYD_...`` for an environment override."""

    key: str
    message: str
    source: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration is not usable; ``problems`` lists every reason found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


# --------------------------------------------------------------------------------------------------
# Locating keys in the TOML source (tomllib keeps no positions)
# --------------------------------------------------------------------------------------------------

_BARE_KEY = r"[A-Za-z0-9_\-]+"
_QUOTED_KEY = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY_PART = rf"(?:{_BARE_KEY}|{_QUOTED_KEY})"
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_KEY_PART_RE = re.compile(_KEY_PART)


def _split_dotted(dotted: str) -> list[str]:
    parts = []
    for match in _KEY_PART_RE.finditer(dotted):
        token = match.group(0)
        if token[0] == '"':
            token = tomllib.loads(f"k = {token}")["k"]
        elif token[0] == "'":
            token = token[1:-1]
        parts.append(token)
    return parts


def locate_keys(source: str) -> dict[KeyPath, int]:
    """Maps each key path and table header in a TOML document to its 1-based line.

    Array-of-tables elements get their index (``("carriers", 1, "binds", 0, "port")``). Lines inside
    multi-line strings are ignored; keys of inline tables are not listed (callers fall back to the
    longest listed prefix, i.e. the line of the inline table itself).
    """
    positions: dict[KeyPath, int] = {}
    array_counts: dict[KeyPath, int] = {}
    current: KeyPath = ()
    open_string: str | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        if open_string is not None:
            if line.count(open_string) % 2 == 1:
                open_string = None
            continue
        header = _HEADER_RE.match(line)
        if header:
            resolved: list[str | int] = []
            names = _split_dotted(header.group(2))
            for position, name in enumerate(names):
                resolved.append(name)
                is_last = position == len(names) - 1
                if is_last and header.group(1) == "[[":
                    key = tuple(resolved)
                    index = array_counts.get(key, 0)
                    array_counts[key] = index + 1
                    resolved.append(index)
                elif not is_last and tuple(resolved) in array_counts:
                    resolved.append(array_counts[tuple(resolved)] - 1)
            current = tuple(resolved)
            positions.setdefault(current, number)
            continue
        assign = _ASSIGN_RE.match(line)
        if assign:
            path = current + tuple(_split_dotted(assign.group(1)))
            positions.setdefault(path, number)
            rest = line[assign.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    open_string = quote
                    break
    return positions


# --------------------------------------------------------------------------------------------------
# The raw tree and where each value came from
# --------------------------------------------------------------------------------------------------


class _EnvText(str):
    """A string from the environment: the validators parse it into the type they expect."""

    __slots__ = ()


@dataclass
class _Origins:
    """Where values came from: a file with key positions, plus environment overrides by key path."""

    source: str
    positions: dict[KeyPath, int]
    env_vars: dict[KeyPath, str] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[str, int | None]:
        for length in range(len(path), -1, -1):
            env_var = self.env_vars.get(path[:length])
            if env_var is not None:
                return f"${env_var}", None
            if length and path[:length] in self.positions:
                return self.source, self.positions[path[:length]]
        return self.source, None if self.source == DEMO_SOURCE else 1


def _format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


class _Problems:
    def __init__(self, origins: _Origins) -> None:
        self.origins = origins
        self.items: list[ConfigProblem] = []

    def add(self, path: KeyPath, message: str) -> None:
        source, line = self.origins.locate(path)
        problem = ConfigProblem(_format_path(path), message, source, line)
        if problem not in self.items:  # a carrier-level default read by several binds is reported once
            self.items.append(problem)


# --------------------------------------------------------------------------------------------------
# Environment overrides
# --------------------------------------------------------------------------------------------------

_PLAIN_SECTIONS: Final = ("database", "bus", "log", "metrics", "health", "panel", "daemon")
_ARRAY_KEYS: Final = ("carriers", "services", "binds")
_INHERITED_BIND_KEYS: Final = ("system_id", "password", "password_file")


def _find_element(items: list[Any], selector: str) -> int | None:
    if selector.isdigit():
        index = int(selector)
        return index if index < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name", "")).lower() == selector:
            return index
    return None


def _apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str], origins: _Origins, problems: list[ConfigProblem]
) -> None:
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable == f"{ENV_PREFIX}CONFIG":
            continue
        value = _EnvText(environ[variable])
        segments = [segment.lower() for segment in variable[len(ENV_PREFIX) :].split("__")]
        if len(segments) == 1:
            section, _, key = segments[0].partition("_")
            if section not in _PLAIN_SECTIONS or not key:
                problems.append(ConfigProblem(variable, "unknown setting", f"${variable}"))
                continue
            segments = [section, key]
        path: list[str | int] = []
        node: Any = raw
        for segment in segments[:-1]:
            if isinstance(node, list):
                index = _find_element(node, segment)
                if index is None:
                    problems.append(
                        ConfigProblem(
                            f"{_format_path(tuple(path))}[{segment}]",
                            "no such element to override",
                            f"${variable}",
                        )
                    )
                    break
                path.append(index)
                node = node[index]
            elif isinstance(node, dict):
                name = _existing_key(node, segment)
                path.append(name)
                node = node.setdefault(name, [] if name in _ARRAY_KEYS else {})
            else:
                problems.append(ConfigProblem(_format_path(tuple(path)), "is not a table", f"${variable}"))
                break
        else:
            if not isinstance(node, dict):
                problems.append(
                    ConfigProblem(
                        _format_path(tuple(path)),
                        "is a list: pick an element by name or index",
                        f"${variable}",
                    )
                )
                continue
            key = _existing_key(node, segments[-1])
            node[key] = value
            origins.env_vars[(*path, key)] = variable
            if len(path) == 2 and path[0] == "carriers" and key in _INHERITED_BIND_KEYS:
                _override_binds(node, path, key, value, variable, origins)


def _existing_key(table: dict[str, Any], lowered: str) -> str:
    """The table's own spelling of a key (``ES`` for ``es``), or ``lowered`` when it is new."""
    for key in table:
        if key.lower() == lowered:
            return key
    return lowered


def _override_binds(
    carrier: dict[str, Any], path: list[str | int], key: str, value: str, variable: str, origins: _Origins
) -> None:
    binds = carrier.get("binds", [])
    if not isinstance(binds, list):
        return
    for index, bind in enumerate(binds):
        if not isinstance(bind, dict):
            continue
        if key in ("password", "password_file"):
            bind.pop("password", None)
            bind.pop("password_file", None)
        else:
            bind[key] = value
            origins.env_vars[(*path, "binds", index, key)] = variable


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

T = TypeVar("T")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
_SHORT_CODE_RE = re.compile(r"^[0-9]{3,15}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_TOPIC_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Invalid(Exception):
    """One value failed validation (turned into a ConfigProblem by the caller)."""


class _Reader:
    """Typed access to one table of the raw tree, recording problems instead of raising."""

    def __init__(self, table: Any, path: KeyPath, problems: _Problems, base_dir: Path) -> None:
        self.path = path
        self.problems = problems
        self.base_dir = base_dir
        if not isinstance(table, dict):
            problems.add(path, "must be a table")
            table = {}
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def child(self, key: str) -> _Reader:
        self.used.add(key)
        return _Reader(self.table.get(key, {}), (*self.path, key), self.problems, self.base_dir)

    def get(self, key: str, convert: Callable[[Any], T], default: T) -> T:
        self.used.add(key)
        if key not in self.table:
            return default
        try:
            return convert(self.table[key])
        except _Invalid as error:
            self.problems.add((*self.path, key), str(error))
            return default

    def require(self, key: str, convert: Callable[[Any], T], default: T) -> T:
        if key not in self.table:
            self.used.add(key)
            self.problems.add((*self.path, key), "is required")
            return default
        return self.get(key, convert, default)

    def has(self, key: str) -> bool:
        return key in self.table

    def finish(self) -> None:
        """Reports keys nobody asked for: a typo must not silently fall back to a default."""
        for key in self.table:
            if key not in self.used:
                self.problems.add((*self.path, key), "unknown key")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {type(value).__name__}")
    return value


def _non_empty(value: Any) -> str:
    text = _string(value).strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, _EnvText):
            try:
                value = int(value.strip())
            except ValueError:
                raise _Invalid(f"must be an integer, not {str(value)!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, not {type(value).__name__}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise _Invalid(f"must be {bound}, not {value}")
        return value

    return convert


def _number(
    minimum: float, *, exclusive: bool = False, maximum: float | None = None
) -> Callable[[Any], float]:
    """Every float setting: TOML (and float()) accept nan and inf, which pass any comparison with
    ``minimum`` and then break every computation that uses them, so they are refused here."""

    def convert(value: Any) -> float:
        if isinstance(value, _EnvText):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Invalid(f"must be a number, not {str(value)!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number, not {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:
            raise _Invalid("must be a finite number, not an integer beyond the range of floats") from None
        if not math.isfinite(number):
            raise _Invalid(f"must be a finite number, not {number}")
        if number < minimum or (exclusive and number == minimum):
            raise _Invalid(f"must be {'greater than' if exclusive else 'at least'} {minimum}, not {value}")
        if maximum is not None and number > maximum:
            raise _Invalid(f"must be at most {maximum:.15g}, not {value}")
        return number

    return convert


#: The longest duration setting (30 days): a lease or a backoff of thousands of years overflows the
#: timestamps computed from it, failing every claim as surely as nan would.
_MAX_SECONDS: Final = 30 * 86_400.0


def _seconds(*, positive: bool = False) -> Callable[[Any], float]:
    """A duration in seconds: from 0 (above 0 when ``positive``) up to 30 days."""
    return _number(0.0, exclusive=positive, maximum=_MAX_SECONDS)


def _boolean(value: Any) -> bool:
    if isinstance(value, _EnvText):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise _Invalid(f"must be true or false, not {str(value)!r}")
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, not {type(value).__name__}")
    return value


def _string_list(item: Callable[[Any], str]) -> Callable[[Any], tuple[str, ...]]:
    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, _EnvText):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise _Invalid(f"must be a list of strings, not {type(value).__name__}")
        result = []
        for position, element in enumerate(value):
            try:
                result.append(item(element))
            except _Invalid as error:
                raise _Invalid(f"item {position}: {error}") from None
        return tuple(result)

    return convert


def _choice(enum: type[StrEnum]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        text = _string(value).strip().lower()
        try:
            return enum(text)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            raise _Invalid(f"must be one of {allowed}, not {text!r}") from None

    return convert


def _pattern(regex: re.Pattern[str], what: str, *, upper: bool = False) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value).strip()
        text = text.upper() if upper else text
        if not regex.match(text):
            raise _Invalid(f"must be {what}, not {text!r}")
        return text

    return convert


def _max_length(limit: int) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        if len(text) > limit:
            raise _Invalid(f"must be at most {limit} characters (SMPP 3.4), not {len(text)}")
        return text

    return convert


def _listen(value: Any) -> ListenAddress:
    text = _string(value).strip()
    match = re.match(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$", text)
    if not match:
        raise _Invalid(f"must be host:port, not {text!r}")
    port = int(match.group("port"))
    if not 0 <= port <= 65535:
        raise _Invalid(f"port must be between 0 and 65535, not {port}")
    host = match.group("v6") or match.group("host")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Invalid(f"{host!r} is not an IPv6 address") from None
    return ListenAddress(host, port)


def _public_url(value: Any) -> str:
    """An origin: http(s)://host[:port], nothing after it (the panel is served at the root)."""
    text = _non_empty(value)
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"must be https://host[:port] (or http:// for a local trial), not {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise _Invalid(f"must be an origin (scheme, host, port) with no path, not {text!r}")
    try:
        port = parts.port
    except ValueError as error:
        raise _Invalid(str(error)) from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _database_url(value: Any) -> str:
    url = _non_empty(value)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise _Invalid("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    return url


def _bus_url(value: Any) -> str:
    url = _non_empty(value)
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return url
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise _Invalid("must be memory:// or mqtt://host[:port] (mqtts:// for TLS)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise _Invalid(str(error)) from None
    return url


def _timezone(value: Any) -> str:
    name = _non_empty(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f"unknown time zone {name!r}") from None
    return name


def _log_level(value: Any) -> str:
    level = _string(value).strip().upper()
    if level not in _LOG_LEVELS:
        raise _Invalid(f"must be one of {', '.join(_LOG_LEVELS)}, not {level!r}")
    return level


def _keyword(value: Any) -> str:
    text = _non_empty(value).upper()
    if any(character.isspace() for character in text):
        raise _Invalid(f"must be one word, not {text!r}")
    return text


def _quirks(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("must be a table")
    return MappingProxyType(_freeze(value))


def _freeze(value: dict[str, Any]) -> dict[str, Any]:
    frozen: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            frozen[key] = MappingProxyType(_freeze(item))
        elif isinstance(item, list):
            frozen[key] = tuple(item)
        else:
            frozen[key] = str(item) if isinstance(item, _EnvText) else item
    return frozen


def _read_secret_file(reader: _Reader, key: str) -> Secret | None:
    """Reads ``key`` (a path, relative to the config file) and returns its first line as a Secret."""
    path_text = reader.get(key, _non_empty, "")
    if not path_text:
        return None
    path = reader.base_dir / path_text
    try:
        content = read_text_file(path)
    except FileProblem as problem:
        reader.problems.add((*reader.path, key), str(problem))
        return None
    lines = content.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        reader.problems.add((*reader.path, key), f"{path} is empty")
        return None
    return Secret(secret)


def _existing_file(base_dir: Path) -> Callable[[Any], Path]:
    def convert(value: Any) -> Path:
        path = base_dir / _non_empty(value)
        if not path.is_file():
            raise _Invalid(f"{path} is not a readable file")
        return path

    return convert


def _database(reader: _Reader) -> DatabaseConfig:
    config = DatabaseConfig(
        url=reader.get("url", _database_url, "sqlite+aiosqlite:///var/gatewayd.db"),
        pool_size=reader.get("pool_size", _integer(1, 1000), 10),
        max_overflow=reader.get("max_overflow", _integer(0, 1000), 10),
    )
    reader.finish()
    return config


def _bus(reader: _Reader, instance: str) -> BusConfig:
    config = BusConfig(
        url=reader.get("url", _bus_url, "memory://"),
        topic_prefix=reader.get(
            "topic_prefix", _pattern(_TOPIC_PREFIX_RE, "an MQTT topic without wildcards"), "echat"
        ),
        client_id=reader.get("client_id", _non_empty, instance),
        buffer_size=reader.get("buffer_size", _integer(1), 10_000),
    )
    reader.finish()
    return config


def _http_server(reader: _Reader, defaults: HTTPServerConfig, *, proxied: bool) -> HTTPServerConfig:
    """The HTTP server keys of [panel] (``proxied``: it may sit behind a reverse proxy) or [metrics]."""
    return HTTPServerConfig(
        max_connections=reader.get("max_connections", _integer(1, 1_000_000), defaults.max_connections),
        header_timeout=reader.get("header_timeout", _number(0, exclusive=True), defaults.header_timeout),
        keep_alive_timeout=reader.get("keep_alive_timeout", _integer(1, 3600), defaults.keep_alive_timeout),
        forwarded_allow_ips=reader.get("forwarded_allow_ips", _string_list(_network), ()) if proxied else (),
    )


def _network(value: Any) -> str:
    text = _non_empty(value)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise _Invalid(f"must be an IP address or network (127.0.0.1, 10.0.0.0/8), not {text!r}") from None


def _panel(reader: _Reader) -> PanelConfig:
    listen = reader.get("listen", _listen, ListenAddress("127.0.0.1", 8080))
    http = _http_server(reader, HTTPServerConfig(), proxied=True)
    inline = reader.get("secret_key", _non_empty, "")
    from_file = _read_secret_file(reader, "secret_key_file")
    if inline and reader.has("secret_key_file"):
        reader.problems.add((*reader.path, "secret_key_file"), "give secret_key or secret_key_file, not both")
    key = Secret(inline) if inline else from_file
    if key is not None and len(key.reveal()) < 16:
        reader.problems.add((*reader.path, "secret_key"), "must be at least 16 characters")
    public_url = reader.get("public_url", _public_url, None)
    reader.finish()
    if key is None:
        return PanelConfig(listen=listen, public_url=public_url, http=http)
    return PanelConfig(
        listen=listen, secret_key=key, secret_key_ephemeral=False, public_url=public_url, http=http
    )


def _daemon(reader: _Reader) -> DaemonConfig:
    config = DaemonConfig(
        instance=reader.get(
            "instance",
            _pattern(re.compile(r"^[A-Za-z0-9_.\-]{1,64}$"), "1-64 letters, digits, '.', '_' or '-'"),
            _default_instance(),
        ),
        timezone=reader.get("timezone", _timezone, "Europe/Madrid"),
        group_commit_max_batch=reader.get("group_commit_max_batch", _integer(1, 100_000), 2000),
        group_commit_max_delay=reader.get("group_commit_max_delay", _seconds(), 0.0),
        mt_claim_batch=reader.get("mt_claim_batch", _integer(1, 100_000), 500),
        mt_claim_lease=reader.get("mt_claim_lease", _seconds(positive=True), 60.0),
        mt_retry_limit=reader.get("mt_retry_limit", _integer(0, 1000), 5),
        mt_retry_backoff_initial=reader.get("mt_retry_backoff_initial", _seconds(), 5.0),
        mt_retry_backoff_max=reader.get("mt_retry_backoff_max", _seconds(), 300.0),
        reassembly_timeout=reader.get("reassembly_timeout", _seconds(positive=True), 120.0),
        mo_answer_deadline=reader.get("mo_answer_deadline", _seconds(positive=True), 5.0),
    )
    if config.mt_retry_backoff_max < config.mt_retry_backoff_initial:
        reader.problems.add(
            (*reader.path, "mt_retry_backoff_max"), "must not be below mt_retry_backoff_initial"
        )
    reader.finish()
    return config


def _default_instance() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:54] or "localhost"
    return f"gatewayd-{host}"


def _bind(reader: _Reader, carrier: _Reader, index: int, carrier_name: str) -> BindConfig:
    def inherited(key: str, convert: Callable[[Any], T], default: T) -> T:
        if reader.has(key):
            return reader.get(key, convert, default)
        reader.used.add(key)
        return carrier.get(key, convert, default)

    system_id = inherited("system_id", _max_length(15), "")
    if not system_id:
        reader.problems.add((*reader.path, "system_id"), "is required (on the bind or its carrier)")
    reader.used.update(("password", "password_file"))
    owner = reader if reader.has("password") or reader.has("password_file") else carrier
    password: Secret | None = None
    if owner.has("password") and owner.has("password_file"):
        owner.problems.add((*owner.path, "password_file"), "give password or password_file, not both")
    elif owner.has("password"):
        password = Secret(owner.get("password", _max_length(8), ""))
    elif owner.has("password_file"):
        password = _read_secret_file(owner, "password_file")
        if password is not None and len(password.reveal()) > 8:
            owner.problems.add(
                (*owner.path, "password_file"), "the password must be at most 8 characters (SMPP 3.4)"
            )
    else:
        reader.problems.add(
            (*reader.path, "password"), "is required (password or password_file, on the bind or its carrier)"
        )
    tls = reader.get("tls", _boolean, False)
    ca_file = reader.get("tls_ca_file", _existing_file(reader.base_dir), None)
    if ca_file is not None and not tls:
        reader.problems.add((*reader.path, "tls_ca_file"), "is only used with tls = true")
    config = BindConfig(
        name=reader.get(
            "name",
            _pattern(_NAME_RE, "lower-case letters, digits, '_' or '-'"),
            f"{carrier_name}-{index + 1}",
        ),
        host=reader.require("host", _non_empty, ""),
        port=reader.require("port", _integer(1, 65535), 2775),
        system_id=system_id,
        password=password or Secret(""),
        bind_type=reader.get("bind_type", _choice(BindType), BindType.TRANSCEIVER),
        system_type=reader.get("system_type", _max_length(12), ""),
        address_range=reader.get("address_range", _max_length(40), ""),
        tls=tls,
        tls_ca_file=ca_file,
        count=reader.get("count", _integer(1, 64), 1),
        window=reader.get("window", _integer(1, 10_000), 10),
        tps=reader.get("tps", _number(0.0, exclusive=True), 100.0),
        enquire_link_interval=reader.get("enquire_link_interval", _seconds(positive=True), 30.0),
        response_timeout=reader.get("response_timeout", _seconds(positive=True), 10.0),
    )
    reader.finish()
    return config


def _carrier(reader: _Reader) -> CarrierConfig:
    name = reader.require("name", _pattern(_NAME_RE, "lower-case letters, digits, '_' or '-'"), "")
    binds_raw = reader.table.get("binds", [])
    reader.used.add("binds")
    binds: list[BindConfig] = []
    if not isinstance(binds_raw, list):
        reader.problems.add((*reader.path, "binds"), "must be an array of tables ([[carriers.binds]])")
        binds_raw = []
    if not binds_raw:
        reader.problems.add((*reader.path, "binds"), "needs at least one [[carriers.binds]]")
    for index, bind_raw in enumerate(binds_raw):
        bind_reader = _Reader(bind_raw, (*reader.path, "binds", index), reader.problems, reader.base_dir)
        binds.append(_bind(bind_reader, reader, index, name or "carrier"))
    # Bind-level defaults given on the carrier were consumed through _bind; mark them known.
    reader.used.update(_INHERITED_BIND_KEYS)
    config = CarrierConfig(
        name=name,
        country=reader.require("country", _pattern(_COUNTRY_RE, "an ISO 3166 alpha-2 code", upper=True), ""),
        short_codes=reader.require("short_codes", _string_list(_pattern(_SHORT_CODE_RE, "3-15 digits")), ()),
        binds=tuple(binds),
        allow_latin1=reader.get("allow_latin1", _boolean, False),
        long_message=reader.get("long_message", _choice(LongMessageMode), LongMessageMode.UDH8),
        quirks=reader.get("quirks", _quirks, MappingProxyType({})),
    )
    if not config.short_codes and reader.has("short_codes"):
        reader.problems.add((*reader.path, "short_codes"), "needs at least one short code")
    reader.finish()
    return config


def _service(reader: _Reader) -> ServiceConfig:
    keyword = reader.get("keyword", _keyword, "")
    config = ServiceConfig(
        name=reader.require("name", _pattern(_NAME_RE, "lower-case letters, digits, '_' or '-'"), ""),
        short_code=reader.require("short_code", _pattern(_SHORT_CODE_RE, "3-15 digits"), ""),
        keyword=keyword or None,
        operator_pool=reader.get("operator_pool", _non_empty, "default"),
        callcentre=reader.get("callcentre", _boolean, False),
    )
    reader.finish()
    return config


_RuleT = TypeVar("_RuleT", MORoute, MTRoute)


def _rules(reader: _Reader, key: str, parse: Callable[..., _RuleT]) -> tuple[_RuleT, ...]:
    """``[[routes.<key>]]``: each table parsed by ``routing``; its errors become problems at the
    offending field's line."""
    reader.used.add(key)
    items = reader.table.get(key, [])
    if not isinstance(items, list):
        reader.problems.add((*reader.path, key), f"must be an array of tables ([[routes.{key}]])")
        return ()
    rules: list[_RuleT] = []
    for index, item in enumerate(items):
        path: KeyPath = (*reader.path, key, index)
        if not isinstance(item, dict):
            reader.problems.add(path, "must be a table")
            continue
        try:
            rules.append(parse(item, position=index + 1))
        except InvalidRule as error:
            reader.problems.add((*path, error.field) if error.field else path, error.reason)
    return tuple(rules)


def _routes(reader: _Reader) -> RoutesConfig:
    config = RoutesConfig(
        mo=_rules(reader, "mo", MORoute.from_dict), mt=_rules(reader, "mt", MTRoute.from_dict)
    )
    reader.finish()
    return config


def _keywords(reader: _Reader) -> Mapping[str, ReservedKeywords]:
    result: dict[str, ReservedKeywords] = {}
    for country in list(reader.table):
        child = reader.child(country)
        if not _COUNTRY_RE.match(country.upper()):
            reader.problems.add((*reader.path, country), "must be an ISO 3166 alpha-2 country code")
            continue
        result[country.upper()] = ReservedKeywords(
            opt_out=child.get("opt_out", _string_list(_keyword), ()),
            opt_in=child.get("opt_in", _string_list(_keyword), ()),
            help=child.get("help", _string_list(_keyword), ()),
        )
        child.finish()
    return MappingProxyType(result)


def _array(root: _Reader, key: str) -> Iterator[_Reader]:
    root.used.add(key)
    items = root.table.get(key, [])
    if not isinstance(items, list):
        root.problems.add((key,), f"must be an array of tables ([[{key}]])")
        return
    for index, item in enumerate(items):
        yield _Reader(item, (key, index), root.problems, root.base_dir)


def _cross_check(config: Config, problems: _Problems) -> None:
    seen_carriers: dict[str, int] = {}
    short_codes: dict[str, str] = {}
    for index, carrier in enumerate(config.carriers):
        if carrier.name and carrier.name in seen_carriers:
            problems.add(("carriers", index, "name"), f"duplicate carrier name {carrier.name!r}")
        seen_carriers[carrier.name] = index
        bind_names: set[str] = set()
        for bind_index, bind in enumerate(carrier.binds):
            if bind.name in bind_names:
                problems.add(
                    ("carriers", index, "binds", bind_index, "name"), f"duplicate bind name {bind.name!r}"
                )
            bind_names.add(bind.name)
        for code in carrier.short_codes:
            short_codes.setdefault(code, carrier.name)
    services: set[tuple[str, str | None]] = set()
    for index, service in enumerate(config.services):
        if service.short_code and service.short_code not in short_codes:
            problems.add(
                ("services", index, "short_code"),
                f"short code {service.short_code} belongs to no carrier's short_codes",
            )
        key = (service.short_code, service.keyword)
        if key in services:
            problems.add(
                ("services", index, "keyword"),
                f"another service already takes short code {service.short_code} with this keyword",
            )
        services.add(key)
    _check_routes(config, set(short_codes), problems)


def _check_routes(config: Config, short_codes: set[str], problems: _Problems) -> None:
    """What ``routing`` cannot know: the carriers, short codes and binds the rules name must exist,
    and each table keeps unique names and at most one default route."""
    carriers = {carrier.name for carrier in config.carriers}
    binds = {bind.name for carrier in config.carriers for bind in carrier.binds}
    tables: tuple[tuple[str, tuple[MORoute | MTRoute, ...]], ...] = (
        ("mo", config.routes.mo),
        ("mt", config.routes.mt),
    )
    for table, rules in tables:
        names: set[str] = set()
        default: str | None = None
        for index, rule in enumerate(rules):
            path: KeyPath = ("routes", table, index)
            if rule.name in names:
                problems.add((*path, "name"), f"another [[routes.{table}]] rule is named {rule.name!r}")
            names.add(rule.name)
            if rule.default:
                if default is not None:
                    problems.add(
                        (*path, "default"), f"rule {default!r} is already the default route; keep exactly one"
                    )
                default = default or rule.name
            if rule.carrier is not None and rule.carrier not in carriers:
                problems.add((*path, "carrier"), f"no carrier is named {rule.carrier!r}")
            if isinstance(rule, MORoute) and rule.short_code not in (None, *short_codes):
                problems.add(
                    (*path, "short_code"), f"short code {rule.short_code} belongs to no carrier's short_codes"
                )
            if isinstance(rule, MTRoute):
                for bind in rule.binds:
                    if bind not in binds:
                        problems.add((*path, "binds"), f"no carrier has a bind named {bind!r}")


def _build(raw: dict[str, Any], origins: _Origins, base_dir: Path, problems: _Problems) -> Config:
    root = _Reader(raw, (), problems, base_dir)
    daemon = _daemon(root.child("daemon"))
    keywords_reader = root.child("keywords")
    config = Config(
        source=None,
        database=_database(root.child("database")),
        bus=_bus(root.child("bus"), daemon.instance),
        log=_log(root.child("log")),
        metrics=_metrics(root.child("metrics")),
        health=_health(root.child("health")),
        panel=_panel(root.child("panel")),
        daemon=daemon,
        carriers=tuple(_carrier(reader) for reader in _array(root, "carriers")),
        services=tuple(_service(reader) for reader in _array(root, "services")),
        keywords=_keywords(keywords_reader),
        routes=_routes(root.child("routes")),
    )
    root.get("simulator", _simulator_table, None)
    root.finish()
    _cross_check(config, problems)
    return config


def _simulator_table(value: Any) -> None:
    """The ``[simulator]`` table is ``gatewayd simulator``'s (docs/SIMULATOR.md); checked here too, so
    that ``check-config`` finds its mistakes before the simulator starts."""
    try:
        parse_config({"simulator": value}, source="simulator")
    except SettingsError as error:  # "simulator: simulator.control.port: ..." -> "control.port: ..."
        raise _Invalid(str(error).removeprefix("simulator: ").removeprefix("simulator.")) from None


def _log(reader: _Reader) -> LogConfig:
    config = LogConfig(
        level=reader.get("level", _log_level, "INFO"), json=reader.get("json", _boolean, False)
    )
    reader.finish()
    return config


def _metrics(reader: _Reader) -> MetricsConfig:
    config = MetricsConfig(
        enabled=reader.get("enabled", _boolean, True),
        listen=reader.get("listen", _listen, ListenAddress("127.0.0.1", 9105)),
        http=_http_server(reader, MetricsConfig().http, proxied=False),
    )
    reader.finish()
    return config


def _health(reader: _Reader) -> HealthConfig:
    config = HealthConfig(
        min_binds_up=reader.get("min_binds_up", _integer(0), 1),
        max_outbox_depth=reader.get("max_outbox_depth", _integer(1), 100_000),
    )
    reader.finish()
    return config


# --------------------------------------------------------------------------------------------------
# Defaults and the entry point
# --------------------------------------------------------------------------------------------------


def default_keywords() -> dict[str, Any]:
    """Reserved keywords used when the file has no [keywords] table (Spain's BAJA/STOP, ALTA, AYUDA)."""
    return {"ES": {"opt_out": ["BAJA", "STOP"], "opt_in": ["ALTA"], "help": ["AYUDA", "INFO"]}}


def demo_settings() -> dict[str, Any]:
    """The raw settings of the built-in demo: SQLite under ./var/, the memory bus, and the two
    simulator carriers on 127.0.0.1 (movistar 2775 / 997745, vodafone 2776 / 795500)."""
    return {
        "database": {"url": "sqlite+aiosqlite:///var/gatewayd.db"},
        "bus": {"url": "memory://"},
        # Plain HTTP on loopback: cookies without Secure, or the browser would not send them back.
        "panel": {"public_url": "http://127.0.0.1:8080"},
        "daemon": {"instance": "gatewayd-demo"},
        "carriers": [
            {
                "name": "movistar",
                "country": "ES",
                "short_codes": ["997745"],
                "binds": [{"host": "127.0.0.1", "port": 2775, "system_id": "echat", "password": "secret1"}],
            },
            {
                "name": "vodafone",
                "country": "ES",
                "short_codes": ["795500"],
                "binds": [{"host": "127.0.0.1", "port": 2776, "system_id": "echat", "password": "secret2"}],
            },
        ],
        "services": [
            {"name": "chat-movistar", "short_code": "997745"},
            {"name": "chat-vodafone", "short_code": "795500"},
        ],
    }


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Reads ``path`` (TOML) or, when None, the built-in demo set-up; applies ``GATEWAYD_*`` overrides
    from ``environ`` (default ``os.environ``); validates. Raises :class:`ConfigError` listing every
    problem found."""
    environ = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    if path is None:
        raw = demo_settings()
        origins = _Origins(DEMO_SOURCE, {})
        base_dir = Path.cwd()
        source_path = None
    else:
        source_path = Path(path)
        base_dir = source_path.parent
        try:
            raw, text = read_toml_file(source_path)
        except FileProblem as problem:
            raise ConfigError([ConfigProblem("<file>", problem.reason, problem.path, problem.line)]) from None
        origins = _Origins(str(source_path), locate_keys(text))
    if "keywords" not in raw:
        raw["keywords"] = default_keywords()
    _apply_environment(raw, environ, origins, problems)
    collector = _Problems(origins)
    collector.items.extend(problems)
    config = _build(raw, origins, base_dir, collector)
    if collector.items:
        raise ConfigError(collector.items)
    return dataclasses.replace(config, source=source_path)
