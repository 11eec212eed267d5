"""The daemon's configuration: one TOML file plus ``GATEWAYD_*`` environment overrides, parsed once.

``load_config(path, environ)`` reads the file (or, with no file, the built-in demo set-up), applies the
environment overrides and validates everything into frozen pydantic models. Validation never stops at
the first problem: :class:`ConfigError` lists every one, each naming the key path and where the value
came from (``file:line`` or the environment variable).

Environment overrides: ``GATEWAYD_<SECTION>_<KEY>`` for plain sections (``GATEWAYD_DATABASE_URL``,
``GATEWAYD_LOG_LEVEL``, ``GATEWAYD_DAEMON_MT_RETRY_LIMIT``) and ``__``-separated paths for nested ones,
where an array-of-tables element is picked by its ``name`` or by its index
(``GATEWAYD_CARRIERS__MOVISTAR__PASSWORD``, ``GATEWAYD_CARRIERS__MOVISTAR__BINDS__0__PORT``,
``GATEWAYD_KEYWORDS__ES__OPT_OUT=BAJA,STOP``). Lists are comma-separated. A carrier-level
``system_id`` / ``password`` / ``password_file`` given in the environment also replaces the one of each
of that carrier's binds: the environment is the operator's last word.

Secrets (bind passwords, the panel's secret key) are ``SecretStr``; ``*_file`` variants are read at
load time. URLs keep their password out of ``repr``. The file and the secret files it names are read
by :mod:`settingsfile`: a regular file of at most 1 MiB of UTF-8, or one clear problem.

A ``[simulator]`` table belongs to ``gatewayd simulator`` (docs/SIMULATOR.md): the daemon leaves it
alone, and ``gatewayd check-config`` checks it with the simulator's own model.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from gatewayd.logging import redact_url
from gatewayd.net_safety import allow_entry
from gatewayd.store.accounts import POOL_NAME_LENGTH
from routing.errors import InvalidRule
from routing.premium import Billed, SpendStep, StepAction, check_steps
from routing.quiet_hours import QuietHours, QuietRule
from routing.rules import MORoute, MTRoute
from settingsfile import (
    FileProblem,
    KeyPath,
    Number,
    Origins,
    PositiveSeconds,
    Problem,
    ProblemAt,
    Seconds,
    Settings,
    at_least_one,
    describe,
    format_key,
    locate_keys,
    located,
    problems_at,
    read_text_file,
    read_toml_file,
)

ENV_PREFIX: Final = "GATEWAYD_"
DEMO_SOURCE: Final = "<built-in demo configuration>"

#: One problem of a configuration (kept under this name: it is what ``ConfigError.problems`` holds).
ConfigProblem = Problem


class ConfigError(Exception):
    """The configuration is not usable; ``problems`` lists every reason found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


# --------------------------------------------------------------------------------------------------
# Kinds of values
# --------------------------------------------------------------------------------------------------


class _EnvText(str):
    """A value from the environment: always text, parsed by the setting it lands in."""

    __slots__ = ()


def _comma_separated(value: Any) -> Any:
    """A list from the environment is one comma-separated string."""
    if isinstance(value, _EnvText):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _one_word(value: str) -> str:
    if any(character.isspace() for character in value):
        raise ValueError(f"must be one word, not {value!r}")
    return value


def _pattern(regex: str, what: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"must be {what}, not {value!r}")
        return value

    return AfterValidator(check)


def _smpp_length(limit: int) -> AfterValidator:
    def check(value: SecretStr | str) -> SecretStr | str:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if len(text) > limit:
            raise ValueError(f"must be at most {limit} characters (SMPP 3.4), not {len(text)}")
        return value

    return AfterValidator(check)


def _at_least_characters(limit: int) -> AfterValidator:
    def check(value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < limit:
            raise ValueError(f"must be at least {limit} characters")
        return value

    return AfterValidator(check)


Text = Annotated[str, BeforeValidator(_stripped), StringConstraints(min_length=1)]
#: An operator pool's name (``[[services]] operator_pool``, ``[[routes.mo]] operator_pool``).
Pool = Annotated[
    str, BeforeValidator(_stripped), StringConstraints(min_length=1, max_length=POOL_NAME_LENGTH)
]
_NAME: Final = r"^[a-z0-9][a-z0-9_\-]{0,31}$"
#: An outbound target exempt from the public-address rule: ``host:port``, lower-cased.
AllowEntry = Annotated[Text, AfterValidator(allow_entry)]
Name = Annotated[str, _pattern(_NAME, "lower-case letters, digits, '_' or '-'")]
ShortCode = Annotated[str, BeforeValidator(_stripped), _pattern(r"^[0-9]{3,15}$", "3-15 digits")]
Country = Annotated[str, BeforeValidator(_upper), _pattern(r"^[A-Z]{2}$", "an ISO 3166 alpha-2 code")]
Keyword = Annotated[str, BeforeValidator(_upper), StringConstraints(min_length=1), AfterValidator(_one_word)]
Keywords = Annotated[tuple[Keyword, ...], BeforeValidator(_comma_separated)]
#: A bind's password, at most 8 characters (SMPP 3.4).
BindPassword = Annotated[SecretStr, _smpp_length(8)]
#: The panel's key signing the sign-in form's CSRF token.
PanelSecretKey = Annotated[SecretStr, _at_least_characters(16)]
Port = Annotated[int, Field(ge=1, le=65535)]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """``host:port`` (``[v6]:port``) an HTTP endpoint listens on; port 0 picks a free one."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _listen(value: Any) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("must be host:port")
    text = value.strip()
    match = re.match(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$", text)
    if not match:
        raise ValueError(f"must be host:port, not {text!r}")
    port = int(match.group("port"))
    if port > 65535:
        raise ValueError(f"port must be between 0 and 65535, not {port}")
    host = match.group("v6") or match.group("host")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    return ListenAddress(host, port)


Listen = Annotated[ListenAddress, PlainValidator(_listen)]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"must be an IP address or network (127.0.0.1, 10.0.0.0/8), not {value!r}") from None


def _database_url(url: str) -> str:
    if url.split("://", 1)[0] not in ("sqlite+aiosqlite", "postgresql+asyncpg") or "://" not in url:
        raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    return url


def _bus_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return url
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("must be memory:// or mqtt://host[:port] (mqtts:// for TLS)")
    parts.port  # noqa: B018 - raises ValueError on a bad port
    return url


def _public_url(text: str) -> str:
    """An origin: http(s)://host[:port], nothing after it (the panel is served at the root)."""
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be https://host[:port] (or http:// for a local trial), not {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"must be an origin (scheme, host, port) with no path, not {text!r}")
    port = parts.port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


TimeZone = Annotated[str, BeforeValidator(_stripped), AfterValidator(_time_zone)]


def _minor_units(value: Any) -> Any:
    """A price or an amount (``1.20``, ``"1.20"``, ``40``) as minor units (120, 4000): at most two
    decimals, not negative, at most 100,000."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be an amount such as 1.20")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"must be an amount such as 1.20, not {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"must be an amount such as 1.20, not {value!r}")
    if amount < 0:
        raise ValueError(f"must not be negative, not {value}")
    if amount > 100_000:
        raise ValueError(f"must be at most 100000, not {value}")
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise ValueError(f"must have at most two decimals, not {value}")
    return int(minor)


#: An amount of money as minor units (cents, pence): ``1.20`` in the file is 120.
Money = Annotated[int, BeforeValidator(_minor_units)]


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    frozen: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            frozen[key] = _frozen(item)
        elif isinstance(item, list):
            frozen[key] = tuple(item)
        else:
            frozen[key] = str(item) if isinstance(item, _EnvText) else item
    return MappingProxyType(frozen)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _secret_from_file(data: Any, key: str, info: ValidationInfo, kind: TypeAdapter[SecretStr]) -> Any:
    """``<key>_file`` names a file (relative to the configuration) whose first line is ``key``, a
    secret of ``kind``; its problems are reported at ``<key>_file``."""
    file_key = f"{key}_file"
    if not isinstance(data, dict) or file_key not in data:
        return data
    if key in data:
        raise ProblemAt(file_key, f"give {key} or {file_key}, not both")
    name = data[file_key]
    if not isinstance(name, str) or not name.strip():
        raise ProblemAt(file_key, "must be the name of a file")
    path = _base_dir(info) / name.strip()
    try:
        lines = read_text_file(path).splitlines()
    except FileProblem as problem:
        raise ProblemAt(file_key, str(problem)) from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ProblemAt(file_key, f"{path} is empty")
    try:
        kind.validate_python(secret)
    except ValidationError as error:
        raise ProblemAt(file_key, f"{path}: the {key} {describe(error.errors()[0])}") from None
    rest = {other: value for other, value in data.items() if other != file_key}
    return {**rest, key: secret}


# --------------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------------


class DatabaseConfig(Settings):
    """``url`` is an SQLAlchemy async URL (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``)."""

    url: Annotated[Text, AfterValidator(_database_url)] = Field(
        "sqlite+aiosqlite:///var/gatewayd.db", repr=False
    )
    pool_size: int = Field(10, ge=1, le=1000)
    max_overflow: int = Field(10, ge=0, le=1000)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


class BusConfig(Settings):
    """``url`` is ``memory://`` or ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS);
    ``client_id`` defaults to ``[daemon] instance``."""

    url: Annotated[Text, AfterValidator(_bus_url)] = Field("memory://", repr=False)
    topic_prefix: Annotated[
        str, _pattern(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$", "an MQTT topic without wildcards")
    ] = "echat"
    client_id: Text | None = None
    buffer_size: int = Field(10_000, ge=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)


class LogConfig(Settings):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)] = (
        "INFO"
    )
    #: ``json`` in the file: one JSON object per line instead of key=value text.
    json_lines: bool = Field(False, alias="json")


class _HTTPKeys(Settings):
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    header_timeout: Number = Field(10.0, gt=0)
    keep_alive_timeout: int = Field(5, ge=1, le=3600)


class HTTPServerConfig(_HTTPKeys):
    """An HTTP endpoint's defences against slow and too many clients (``gatewayd.webserver``):
    ``max_connections`` open at once (also kept under the open-files limit); ``header_timeout``
    seconds for a request's headers to arrive whole, and at most between two pieces of its body;
    ``keep_alive_timeout`` seconds an idle connection stays open; ``forwarded_allow_ips`` the proxies
    (addresses or networks) whose ``X-Forwarded-For`` / ``-Proto`` are believed (none: the peer's
    address is the client's)."""

    forwarded_allow_ips: Annotated[
        tuple[Annotated[Text, AfterValidator(_network)], ...], BeforeValidator(_comma_separated)
    ] = ()


class MetricsConfig(_HTTPKeys):
    """``/metrics`` and ``/healthz``, with the HTTP keys of :class:`HTTPServerConfig` (no proxy)."""

    enabled: bool = True
    listen: Listen = ListenAddress("127.0.0.1", 9105)
    # Prometheus scrapes over one or two connections.
    max_connections: int = Field(64, ge=1, le=1_000_000)

    @property
    def http(self) -> HTTPServerConfig:
        return HTTPServerConfig(
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
            keep_alive_timeout=self.keep_alive_timeout,
        )


class HealthConfig(Settings):
    """What ``/healthz`` calls healthy: at least ``min_binds_up`` binds up for every carrier (or as many
    as this daemon owns of it, when other daemons own the rest: ``[cluster]``) and an outbox no deeper
    than ``max_outbox_depth``."""

    min_binds_up: int = Field(1, ge=0)
    max_outbox_depth: int = Field(100_000, ge=1)


_BIND_PASSWORD: Final = TypeAdapter(BindPassword)
_PANEL_SECRET_KEY: Final = TypeAdapter(PanelSecretKey)


def _random_secret_key() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


class PanelConfig(HTTPServerConfig):
    """The panel, with the HTTP keys of :class:`HTTPServerConfig`. Without ``secret_key`` (or
    ``secret_key_file``) a random key is made: sign-in forms then expire at a restart and are not
    shared between instances (``secret_key_ephemeral``). ``public_url`` is the origin people reach the
    panel at (``https://chat.example.com``, behind a TLS proxy); None means HTTPS somewhere we cannot
    see: cookies are Secure unless it is an ``http://`` URL."""

    listen: Listen = ListenAddress("127.0.0.1", 8080)
    secret_key: PanelSecretKey = Field(default_factory=_random_secret_key)
    public_url: Annotated[Text, AfterValidator(_public_url)] | None = None
    #: The photo gallery's files (relative: to the working directory) and the "host:port" pairs a URL
    #: import may fetch from although they are loopback or private addresses (tests, a local CDN).
    gallery_dir: Text = "var/gallery"
    gallery_fetch_allow: tuple[AllowEntry, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _secret_key_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret_from_file(data, "secret_key", info, _PANEL_SECRET_KEY)

    @property
    def secret_key_ephemeral(self) -> bool:
        return "secret_key" not in self.model_fields_set

    @property
    def secure(self) -> bool:
        """Whether browsers reach the panel over HTTPS: Secure cookies, HSTS."""
        return self.public_url is None or self.public_url.startswith("https://")

    @property
    def http(self) -> HTTPServerConfig:
        return HTTPServerConfig(
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
            keep_alive_timeout=self.keep_alive_timeout,
            forwarded_allow_ips=self.forwarded_allow_ips,
        )


def _default_instance() -> str:
    host = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:54] or "localhost"
    return f"gatewayd-{host}"


class DaemonConfig(Settings):
    """Durations are seconds. ``timezone`` is the services' default time zone (the manual's ``hora``
    and ``fecha`` variables)."""

    instance: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = Field(
        default_factory=_default_instance
    )
    timezone: TimeZone = "Europe/Madrid"
    group_commit_max_batch: int = Field(2000, ge=1, le=100_000)
    mt_claim_batch: int = Field(500, ge=1, le=100_000)
    mt_claim_lease: PositiveSeconds = 60.0
    mt_retry_limit: int = Field(5, ge=0, le=1000)
    mt_retry_backoff_initial: Seconds = 5.0
    mt_retry_backoff_max: Seconds = 300.0
    reassembly_timeout: PositiveSeconds = 120.0
    mo_answer_deadline: PositiveSeconds = 5.0

    @field_validator("mt_retry_backoff_max")
    @classmethod
    def _backoff_grows(cls, maximum: float, info: ValidationInfo) -> float:
        if maximum < info.data.get("mt_retry_backoff_initial", 0.0):
            raise ValueError("must not be below mt_retry_backoff_initial")
        return maximum

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ClusterConfig(Settings):
    """Bind ownership among the daemons sharing one database (``gatewayd.cluster``): each daemon beats
    every ``heartbeat`` seconds, renewing the leases of the bind slots it owns to ``lease`` seconds.
    A daemon killed outright loses its slots to the others after ``lease`` seconds; one that cannot
    renew unbinds its slots a quarter ``lease`` before its lease can expire. ``lease`` must be at least
    three heartbeats, so one late heartbeat never costs a bind."""

    lease: PositiveSeconds = 6.0
    heartbeat: PositiveSeconds = 1.0

    @field_validator("heartbeat")
    @classmethod
    def _three_per_lease(cls, heartbeat: float, info: ValidationInfo) -> float:
        lease = info.data.get("lease")
        if lease is not None and lease < 3 * heartbeat:
            raise ValueError(f"must be at most a third of lease ({lease:g} s): three heartbeats per lease")
        return heartbeat

    @property
    def margin(self) -> float:
        """Seconds before its lease may expire elsewhere that a daemon that could not renew unbinds."""
        return self.lease / 4


class WebhooksConfig(Settings):
    """The webhook delivery worker (``gatewayd.webhooks``). Durations are seconds. A failed delivery is
    tried again after ``backoff_initial`` doubling up to ``backoff_max`` (with jitter), and is dead after
    ``max_attempts`` tries or once older than ``max_age``. ``allow`` lists ``host:port`` targets exempt
    from the public-address rule (a receiver on this host or the private network). Delivered deliveries
    are deleted ``keep_delivered_days`` after their delivery (dead ones stay until redelivered or their
    subscription is deleted)."""

    enabled: bool = True
    timeout: PositiveSeconds = 10.0
    max_attempts: int = Field(12, ge=1, le=1000)
    max_age: PositiveSeconds = 86_400.0
    backoff_initial: PositiveSeconds = 5.0
    backoff_max: PositiveSeconds = 3600.0
    concurrency: int = Field(32, ge=1, le=1000)
    per_subscription: int = Field(8, ge=1, le=1000)
    poll_interval: PositiveSeconds = 1.0
    refresh_interval: PositiveSeconds = 30.0
    keep_delivered_days: float = Field(7.0, gt=0, le=3650)
    allow: tuple[AllowEntry, ...] = ()

    @field_validator("backoff_max")
    @classmethod
    def _backoff_grows(cls, maximum: float, info: ValidationInfo) -> float:
        if maximum < info.data.get("backoff_initial", 0.0):
            raise ValueError("must not be below backoff_initial")
        return maximum


class AssignmentConfig(Settings):
    """How the daemon hands waiting conversations to operators (``gatewayd.assignment``): a pass over
    everything waiting and everyone who left the desk every ``sweep_interval`` seconds, at most
    ``batch`` conversations per pass; an operator whose desk went unseen for ``presence_grace`` seconds
    (longer than the desk's heartbeat) has left and gives back what they hold. A panel started from
    this configuration assigns with the same settings (``panel.serve.settings_from_config``).
    ``callcentre_pool`` is the call-centre team's operator pool: a service diverted to the call
    centre (``[[services]] callcentre``, then the admin's switch) has its conversations offered to
    that pool's operators instead of its own (``gatewayd.diversion``)."""

    sweep_interval: PositiveSeconds = 2.0
    presence_grace: PositiveSeconds = 40.0
    batch: int = Field(200, ge=1, le=10_000)
    callcentre_pool: Pool = "callcentre"


_QUIET_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")


def _quiet_hours(value: str) -> str:
    text = value.strip().replace(" ", "")
    if text.lower() in ("", "off"):
        return ""
    if not _QUIET_HOURS.match(text):
        raise ValueError(f"must be HH:MM-HH:MM (e.g. 22:00-09:00) or off, not {value!r}")
    return text


QuietHoursText = Annotated[str, AfterValidator(_quiet_hours)]


class QuietHoursConfig(Settings):
    """Quiet hours for pushes and campaigns (``routing.quiet_hours``): ``default`` (``HH:MM-HH:MM``,
    across midnight when the end comes first; ``off`` for none) unless ``countries`` gives a country
    its own (``GB = "21:00-08:00"``, ``off`` for none there), read on the client's wall clock:
    ``zones`` maps a country to an IANA zone, any other country is read in ``[daemon] timezone``.
    ``reply_window``: seconds after a client's MO in which a push to them is not held (an answer to
    someone who just wrote). Unset ``default`` / ``zones`` fall back to the older ``[campaigns]
    quiet_hours`` / ``[campaigns.country_zones]`` (whose default is 22:00-09:00)."""

    default: QuietHoursText | None = None
    countries: Annotated[Mapping[Country, QuietHoursText], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({})
    )
    zones: Annotated[Mapping[Country, TimeZone], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({})
    )
    reply_window: Seconds = 1800.0


class CampaignsConfig(Settings):
    """The mass push's sender (``gatewayd.campaigns``). ``quiet_hours`` and ``country_zones``: the
    older spelling of ``[quiet_hours] default`` and ``zones`` (still read; the quiet hours apply to
    single pushes as well). ``backlog_seconds``: how many seconds of each carrier's binds' TPS of campaign MTs
    the outbox holds at most (a reply queued meanwhile waits behind no more); ``batch``: recipients
    queued per transaction at most; ``poll_interval``: seconds between the sender's passes."""

    quiet_hours: Annotated[str, AfterValidator(_quiet_hours)] = "22:00-09:00"
    country_zones: Annotated[Mapping[Country, TimeZone], AfterValidator(MappingProxyType)] = Field(
        default_factory=lambda: MappingProxyType({})
    )
    backlog_seconds: PositiveSeconds = 5.0
    batch: int = Field(500, ge=1, le=10_000)
    poll_interval: PositiveSeconds = 1.0


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


class BindConfig(Settings):
    """One configured bind; ``count`` identical sessions are opened (named ``{name}#{k}`` by the
    supervisor when ``count`` > 1). ``system_id`` and ``password`` may be given on its carrier."""

    name: Name
    host: Text
    port: Port
    system_id: Annotated[str, _smpp_length(15), StringConstraints(min_length=1)]
    password: BindPassword
    bind_type: Annotated[BindType, BeforeValidator(_lower)] = BindType.TRANSCEIVER
    system_type: Annotated[str, _smpp_length(12)] = ""
    address_range: Annotated[str, _smpp_length(40)] = ""
    tls: bool = False
    tls_ca_file: Path | None = None
    count: int = Field(1, ge=1, le=64)
    window: int = Field(10, ge=1, le=10_000)
    tps: Number = Field(100.0, gt=0)
    enquire_link_interval: PositiveSeconds = 30.0
    response_timeout: PositiveSeconds = 10.0

    @model_validator(mode="before")
    @classmethod
    def _password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret_from_file(data, "password", info, _BIND_PASSWORD)

    @field_validator("tls_ca_file", mode="before")
    @classmethod
    def _readable_ca_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        if not info.data.get("tls"):
            raise ValueError("is only used with tls = true")
        path = _base_dir(info) / value.strip()
        if not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @property
    def can_send(self) -> bool:
        return self.bind_type is not BindType.RECEIVER

    @property
    def can_receive(self) -> bool:
        return self.bind_type is not BindType.TRANSMITTER


#: Keys a carrier may give for all its binds (a bind's own value wins).
INHERITED_BIND_KEYS: Final = ("system_id", "password", "password_file")


class CarrierConfig(Settings):
    """A mobile carrier. ``quirks`` is handed untouched to ``routing`` (a read-only mapping)."""

    name: Name
    country: Country
    short_codes: Annotated[
        tuple[ShortCode, ...], at_least_one("short code"), BeforeValidator(_comma_separated)
    ]
    binds: Annotated[tuple[BindConfig, ...], at_least_one("[[carriers.binds]]")]
    allow_latin1: bool = False
    long_message: Annotated[LongMessageMode, BeforeValidator(_lower)] = LongMessageMode.UDH8
    quirks: Annotated[Mapping[str, Any], AfterValidator(_frozen)] = Field(
        default_factory=lambda: MappingProxyType({})
    )

    @model_validator(mode="before")
    @classmethod
    def _binds_inherit(cls, data: Any) -> Any:
        """The carrier's system_id / password (or password_file) are each bind's default, and a bind
        without a name is ``<carrier>-<n>``."""
        if not isinstance(data, dict) or not isinstance(data.get("binds"), list):
            return data
        defaults = {key: data[key] for key in INHERITED_BIND_KEYS if key in data}
        name = data.get("name")
        prefix = name if isinstance(name, str) and re.match(_NAME, name) else "carrier"  # its own error
        binds = []
        for index, bind in enumerate(data["binds"]):
            if isinstance(bind, dict):
                own_password = "password" in bind or "password_file" in bind
                inherited = {
                    key: value
                    for key, value in defaults.items()
                    if key not in bind and not (key != "system_id" and own_password)
                }
                bind = {"name": f"{prefix}-{index + 1}", **inherited, **bind}
            binds.append(bind)
        rest = {key: value for key, value in data.items() if key not in INHERITED_BIND_KEYS}
        return {**rest, "binds": binds}

    @field_validator("binds")
    @classmethod
    def _unique_bind_names(cls, binds: tuple[BindConfig, ...]) -> tuple[BindConfig, ...]:
        seen: set[str] = set()
        duplicates: list[tuple[KeyPath, str]] = []
        for index, bind in enumerate(binds):
            if bind.name in seen:
                duplicates.append(((index, "name"), f"duplicate bind name {bind.name!r}"))
            seen.add(bind.name)
        if duplicates:
            raise problems_at(*duplicates)
        return binds


class SpendStepConfig(Settings):
    """One spend step: at ``at`` spent in a calendar month (in the service's zone), ``action``
    (``notify``: a reminder; ``confirm``: a reminder, and billed MTs stop until the client answers an
    acceptance keyword; ``cap``: the cap notice, and billed MTs stop until the month ends); ``text``
    its notice (default: the gateway's own, in the country's language)."""

    at: Money
    action: StepAction
    text: Text | None = None

    @property
    def step(self) -> SpendStep:
        return SpendStep(self.at, self.action, self.text)


def _steps_in_order(steps: tuple[SpendStepConfig, ...]) -> tuple[SpendStepConfig, ...]:
    problems = check_steps([step.step for step in steps])
    if problems:
        raise problems_at(*(((index, field), message) for index, field, message in problems))
    return steps


SpendSteps = Annotated[tuple[SpendStepConfig, ...], AfterValidator(_steps_in_order)]


class SpendConfig(Settings):
    """``[spend.<country>]``: the spend steps of the billed services on that country's short codes
    (a service's own ``[services.billing] steps`` replace them)."""

    steps: SpendSteps = ()


class BillingConfig(Settings):
    """``[services.billing]``: the service bills its clients. ``price_mo`` / ``price_mt`` per message
    (amounts such as ``1.20``, in ``currency``), ``billed``: which messages the carrier bills (``mo``:
    each chat MO; ``mt``: each operator MT — reply, push, mass push); ``notice`` the price notice (the
    manual's variables and ``{precio}`` / ``{price}``, ``{moneda}`` / ``{currency}``, ``{proveedor}`` /
    ``{provider}``), sent as a system MT before anything else on a client's first MO and again after
    ``notice_again_after_days`` of silence; ``acceptance``: the chat waits for the client's acceptance
    keyword after the notice; ``steps``: this service's spend steps (default: ``[spend.<country>]``)."""

    price_mo: Money = 0
    price_mt: Money = 0
    currency: Annotated[str, BeforeValidator(_upper), _pattern(r"^[A-Z]{3}$", "an ISO 4217 code such as EUR")]
    provider: Text
    billed: Billed
    notice: Text
    notice_again_after_days: int | None = Field(None, ge=1, le=3650)
    acceptance: bool = False
    steps: SpendSteps | None = None

    @model_validator(mode="after")
    def _billed_price(self) -> BillingConfig:
        price = self.price_mo if self.billed is Billed.MO else self.price_mt
        if price == 0:
            message = f"must be above 0: the service bills each {self.billed.value.upper()}"
            raise problems_at(((f"price_{self.billed.value}",), message))
        return self


class ServiceConfig(Settings):
    """A chat service on a short code, optionally only for MOs starting with ``keyword``; ``timezone``
    (default: ``[daemon] timezone``) is where its ``hora`` and ``fecha`` variables are read;
    ``banned_reply`` is sent (once per client per 24 h) to a banned client who texts it;
    ``overdue_after``: seconds a conversation may wait for an answer before the live monitor shows it
    overdue."""

    name: Name
    short_code: ShortCode
    keyword: Keyword | None = None
    operator_pool: Pool = "default"
    callcentre: bool = False
    timezone: TimeZone | None = None
    #: The automatic answer to a banned client's MO (None: no answer), at most one per client per 24 h.
    banned_reply: Text | None = None
    #: Seconds a conversation of this service may wait for an answer before the monitor flags it.
    overdue_after: int = Field(120, ge=1, le=86_400)
    #: The service bills its clients: price notice, acceptance, spend control (None: it does not).
    billing: BillingConfig | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The service's time zone (``[daemon] timezone`` unless the service names its own)."""
        assert self.timezone is not None, "filled in from [daemon] timezone when the configuration loads"
        return ZoneInfo(self.timezone)


def _rules(parse: Any) -> PlainValidator:
    """``[[routes.<table>]]``: each table parsed by ``routing``; its errors become problems at the
    offending field."""

    def validate(items: Any) -> tuple[Any, ...]:
        if isinstance(items, tuple):
            return items
        if not isinstance(items, list):
            raise ValueError("must be an array of tables")
        rules = []
        found: list[tuple[KeyPath, str]] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                found.append(((index,), "must be a table"))
                continue
            try:
                rules.append(parse(item, position=index + 1))
            except InvalidRule as error:
                found.append(((index, error.field) if error.field else (index,), error.reason))
        if found:
            raise problems_at(*found)
        return tuple(rules)

    return PlainValidator(validate)


class RoutesConfig(Settings):
    """Explicit routing rules (``[[routes.mo]]`` / ``[[routes.mt]]``), validated by ``routing``.

    MO rules are tried before the rules made from ``[[services]]``; a table without a rule marked
    ``default = true`` gets the built-in default route (see ``gatewayd.routes``)."""

    mo: Annotated[tuple[MORoute, ...], _rules(MORoute.from_dict)] = ()
    mt: Annotated[tuple[MTRoute, ...], _rules(MTRoute.from_dict)] = ()

    @field_validator("mo")
    @classmethod
    def _pool_names_fit(cls, rules: tuple[MORoute, ...]) -> tuple[MORoute, ...]:
        too_long = [
            ((index, "operator_pool"), f"must be at most {POOL_NAME_LENGTH} characters")
            for index, rule in enumerate(rules)
            if len(rule.operator_pool) > POOL_NAME_LENGTH
        ]
        if too_long:
            raise problems_at(*too_long)
        return rules


class ReservedKeywords(Settings):
    """Keywords reserved in one country; matched case-insensitively on the MO's first word."""

    opt_out: Keywords = ()
    opt_in: Keywords = ()
    help: Keywords = ()
    #: A client's positive answer to a billed service's price notice or confirm step (the whole MO).
    accept: Keywords = ()


def default_keywords() -> dict[str, Any]:
    """Reserved keywords used when the file has no [keywords] table (Spain's BAJA/STOP, ALTA, AYUDA)."""
    return {
        "ES": {
            "opt_out": ["BAJA", "STOP"],
            "opt_in": ["ALTA"],
            "help": ["AYUDA", "INFO"],
            "accept": ["SI", "YES"],
        }
    }


class Config(Settings):
    """The whole configuration. ``source`` is the file read, or None for the built-in demo."""

    database: DatabaseConfig = DatabaseConfig()
    bus: BusConfig = BusConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    panel: PanelConfig = Field(default_factory=PanelConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    cluster: ClusterConfig = ClusterConfig()
    assignment: AssignmentConfig = AssignmentConfig()
    campaigns: CampaignsConfig = Field(default_factory=CampaignsConfig)
    webhooks: WebhooksConfig = WebhooksConfig()
    quiet_hours: QuietHoursConfig = Field(default_factory=QuietHoursConfig)
    carriers: tuple[CarrierConfig, ...] = ()
    services: tuple[ServiceConfig, ...] = ()
    keywords: Annotated[Mapping[Country, ReservedKeywords], AfterValidator(MappingProxyType)] = Field(
        default_factory=default_keywords, validate_default=True
    )
    routes: RoutesConfig = RoutesConfig()
    #: Spend steps per country (``[spend.GB]``) for the billed services on its short codes.
    spend: Annotated[Mapping[Country, SpendConfig], AfterValidator(MappingProxyType)] = Field(
        default_factory=dict
    )
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    def carrier(self, name: str) -> CarrierConfig:
        """The carrier called ``name``; KeyError if there is none."""
        for carrier in self.carriers:
            if carrier.name == name:
                return carrier
        raise KeyError(name)

    def quiet_rule(self) -> QuietRule:
        """The quiet hours pushes and campaigns follow: ``[quiet_hours]``, with the older
        ``[campaigns]`` keys where it leaves them unset."""
        section, older = self.quiet_hours, self.campaigns
        default = section.default if section.default is not None else older.quiet_hours
        zones = {**older.country_zones, **section.zones}
        return QuietRule(
            default=QuietHours.parse(default),
            default_zone=self.daemon.zone,
            countries=MappingProxyType(
                {country: QuietHours.parse(hours) for country, hours in section.countries.items()}
            ),
            zones=MappingProxyType({country: ZoneInfo(zone) for country, zone in zones.items()}),
            recent=timedelta(seconds=section.reply_window),
        )

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_said_once(cls, section: QuietHoursConfig, info: ValidationInfo) -> QuietHoursConfig:
        """The default hours and a country's zone are given in one table or the other, not both."""
        older: CampaignsConfig | None = info.data.get("campaigns")
        if older is None:
            return section
        found: list[tuple[KeyPath, str]] = []
        if section.default is not None and "quiet_hours" in older.model_fields_set:
            found.append((("default",), "also given as [campaigns] quiet_hours: keep one"))
        for country in sorted(set(section.zones) & set(older.country_zones)):
            message = f"{country} also has a zone in [campaigns.country_zones]: keep one"
            found.append((("zones", country), message))
        if found:
            raise problems_at(*found)
        return section

    @model_validator(mode="after")
    def _daemon_defaults(self) -> Config:
        """What other sections take from ``[daemon]``: the MQTT client id and the services' time zone."""
        bus = self.bus
        if bus.client_id is None:
            bus = bus.model_copy(update={"client_id": self.daemon.instance})
        services = tuple(
            service.model_copy(update={"timezone": service.timezone or self.daemon.timezone})
            for service in self.services
        )
        return self.model_copy(update={"bus": bus, "services": services})

    # What no single table can check: names are unique, and the short codes, carriers and binds that
    # services and routes name exist. Each check runs when the tables it reads are valid themselves.

    @field_validator("carriers")
    @classmethod
    def _unique_carrier_names(cls, carriers: tuple[CarrierConfig, ...]) -> tuple[CarrierConfig, ...]:
        seen: set[str] = set()
        found: list[tuple[KeyPath, str]] = []
        for index, carrier in enumerate(carriers):
            if carrier.name in seen:
                found.append(((index, "name"), f"duplicate carrier name {carrier.name!r}"))
            seen.add(carrier.name)
        if found:
            raise problems_at(*found)
        return carriers

    @field_validator("services")
    @classmethod
    def _services_on_known_short_codes(
        cls, services: tuple[ServiceConfig, ...], info: ValidationInfo
    ) -> tuple[ServiceConfig, ...]:
        short_codes = _short_codes(info)
        found: list[tuple[KeyPath, str]] = []
        taken: set[tuple[str, str | None]] = set()
        for index, service in enumerate(services):
            if short_codes is not None and service.short_code not in short_codes:
                message = f"short code {service.short_code} belongs to no carrier's short_codes"
                found.append(((index, "short_code"), message))
            if (service.short_code, service.keyword) in taken:
                message = f"another service already takes short code {service.short_code} with this keyword"
                found.append(((index, "keyword"), message))
            taken.add((service.short_code, service.keyword))
        billed: dict[str, str] = {}
        for index, service in enumerate(services):
            if service.billing is None:
                continue
            if service.short_code in billed:
                message = (
                    f"service {billed[service.short_code]!r} already bills short code {service.short_code}:"
                    " a short code has one price, so at most one service on it has billing"
                )
                found.append(((index, "billing"), message))
            billed.setdefault(service.short_code, service.name)
        if found:
            raise problems_at(*found)
        return services

    @field_validator("routes")
    @classmethod
    def _routes_name_what_exists(cls, routes: RoutesConfig, info: ValidationInfo) -> RoutesConfig:
        carriers: tuple[CarrierConfig, ...] | None = info.data.get("carriers")
        short_codes = _short_codes(info)
        found: list[tuple[KeyPath, str]] = []
        tables: tuple[tuple[str, tuple[MORoute | MTRoute, ...]], ...] = (("mo", routes.mo), ("mt", routes.mt))
        for table, rules in tables:
            names: set[str] = set()
            default: str | None = None
            for index, rule in enumerate(rules):
                path: KeyPath = (table, index)
                if rule.name in names:
                    found.append(((*path, "name"), f"another [[routes.{table}]] rule is named {rule.name!r}"))
                names.add(rule.name)
                if rule.default:
                    if default is not None:
                        message = f"rule {default!r} is already the default route; keep exactly one"
                        found.append(((*path, "default"), message))
                    default = default or rule.name
                if carriers is None:
                    continue
                if rule.carrier is not None and rule.carrier not in {carrier.name for carrier in carriers}:
                    found.append(((*path, "carrier"), f"no carrier is named {rule.carrier!r}"))
                if isinstance(rule, MORoute) and rule.short_code not in (None, *(short_codes or ())):
                    message = f"short code {rule.short_code} belongs to no carrier's short_codes"
                    found.append(((*path, "short_code"), message))
                if isinstance(rule, MTRoute):
                    binds = {bind.name for carrier in carriers for bind in carrier.binds}
                    found.extend(
                        ((*path, "binds"), f"no carrier has a bind named {bind!r}")
                        for bind in rule.binds
                        if bind not in binds
                    )
        if found:
            raise problems_at(*found)
        return routes


def _short_codes(info: ValidationInfo) -> set[str] | None:
    """The carriers' short codes, when the carriers are valid (None otherwise: nothing to check with)."""
    carriers: tuple[CarrierConfig, ...] | None = info.data.get("carriers")
    return None if carriers is None else {code for carrier in carriers for code in carrier.short_codes}


# --------------------------------------------------------------------------------------------------
# Environment overrides
# --------------------------------------------------------------------------------------------------

_PLAIN_SECTIONS: Final = ("database", "bus", "log", "metrics", "health", "panel", "daemon", "cluster")
_ARRAY_KEYS: Final = ("carriers", "services", "binds")


def _find_element(items: list[Any], selector: str) -> int | None:
    if selector.isascii() and selector.isdigit():
        index = int(selector)
        return index if index < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name", "")).lower() == selector:
            return index
    return None


def _existing_key(table: dict[str, Any], lowered: str) -> str:
    """The table's own spelling of a key (``ES`` for ``es``), or ``lowered`` when it is new."""
    for key in table:
        if key.lower() == lowered:
            return key
    return lowered


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str], origins: Origins) -> list[Problem]:
    """Sets every ``GATEWAYD_*`` variable's value into ``raw``, noting in ``origins`` where it came
    from; returns the variables that name nothing."""
    problems: list[Problem] = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable == f"{ENV_PREFIX}CONFIG":
            continue
        where = f"${variable}"
        segments = [segment.lower() for segment in variable[len(ENV_PREFIX) :].split("__")]
        if len(segments) == 1:
            section, _, key = segments[0].partition("_")
            if section not in _PLAIN_SECTIONS or not key:
                problems.append(Problem(variable, "unknown setting", where))
                continue
            segments = [section, key]
        path: list[str | int] = []
        node: Any = raw
        for segment in segments[:-1]:
            if isinstance(node, list):
                index = _find_element(node, segment)
                if index is None:
                    problems.append(
                        Problem(f"{format_key(tuple(path))}[{segment}]", "no such element to override", where)
                    )
                    break
                path.append(index)
                node = node[index]
            elif isinstance(node, dict):
                name = _existing_key(node, segment)
                path.append(name)
                node = node.setdefault(name, [] if name in _ARRAY_KEYS else {})
            else:
                problems.append(Problem(format_key(tuple(path)), "is not a table", where))
                break
        else:
            if not isinstance(node, dict):
                problems.append(
                    Problem(format_key(tuple(path)), "is a list: pick an element by name or index", where)
                )
                continue
            key = _existing_key(node, segments[-1])
            node[key] = _EnvText(environ[variable])
            origins.overrides[(*path, key)] = where
            if len(path) == 2 and path[0] == "carriers" and key in INHERITED_BIND_KEYS:
                _override_binds(node, key)
    return problems


def _override_binds(carrier: dict[str, Any], key: str) -> None:
    """A carrier-level value from the environment replaces the one each bind gives itself: the binds
    then inherit it (and its problems are reported at the variable)."""
    binds = carrier.get("binds", [])
    for bind in binds if isinstance(binds, list) else ():
        if isinstance(bind, dict):
            for own in ("system_id",) if key == "system_id" else ("password", "password_file"):
                bind.pop(own, None)


# --------------------------------------------------------------------------------------------------
# Defaults and the entry point
# --------------------------------------------------------------------------------------------------


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


def _inherited_from_carrier(origins: Origins) -> Callable[[KeyPath], KeyPath]:
    """A bind value the bind does not give came from its carrier: report it there (once)."""

    def relocate(path: KeyPath) -> KeyPath:
        if len(path) >= 5 and path[0] == "carriers" and path[2] == "binds" and path[4] in INHERITED_BIND_KEYS:
            carrier_path = (*path[:2], *path[4:])
            if not origins.has(path[:5]) and origins.has(carrier_path[:3]):
                return carrier_path
        return path

    return relocate


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Reads ``path`` (TOML) or, when None, the built-in demo set-up; applies ``GATEWAYD_*`` overrides
    from ``environ`` (default ``os.environ``); validates. Raises :class:`ConfigError` listing every
    problem found."""
    environ = os.environ if environ is None else environ
    if path is None:
        raw, origins, base_dir = demo_settings(), Origins(DEMO_SOURCE), Path.cwd()
    else:
        try:
            raw, text = read_toml_file(path)
        except FileProblem as problem:
            raise ConfigError([Problem("<file>", problem.reason, problem.path, problem.line)]) from None
        origins, base_dir = Origins(str(path), locate_keys(text)), Path(path).parent
    raw.pop("simulator", None)  # gatewayd simulator's own table (checked by check-config)
    raw.setdefault("keywords", default_keywords())  # before the environment, which may change one list
    problems = _apply_environment(raw, environ, origins)
    try:
        config = Config.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as error:
        problems += located(error.errors(), origins, relocate=_inherited_from_carrier(origins))
    if problems:
        raise ConfigError(problems)
    config._source = None if path is None else Path(path)
    return config
