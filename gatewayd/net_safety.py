"""Outbound HTTP targets given by an admin (a gallery import, a webhook): refused unless safe to reach.

- only ``http`` and ``https`` URLs, without user name or password;
- the host is resolved once, within :data:`RESOLVE_TIMEOUT`, and EVERY address it resolves to must be
  a public (global unicast) one: no loopback, private, shared, link-local, multicast, reserved or
  unspecified address, unless the URL's ``host:port`` is allow-listed;
- the caller connects to the address that was checked (:func:`pinned`): the URL's host is kept in the
  Host header and as the TLS server name, so a second DNS answer cannot send the request elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

MAX_URL = 2000
#: Seconds a host's DNS look-up may take: the resolver's own retries can hold a request (an admin's
#: save, a delivery) far longer; a host that slow is treated as one that does not resolve.
RESOLVE_TIMEOUT = 5.0


class Refusal(StrEnum):
    BAD_URL = "bad_url"
    NO_HOST = "no_host"
    NOT_PUBLIC = "not_public"


class UnsafeTarget(Exception):
    """The URL may not be reached; ``refusal`` says why (each caller words it for its users)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class VettedTarget:
    scheme: str
    host: str
    port: int
    #: The checked address to connect to.
    address: str


#: IPv6 ranges refused whatever ``is_global`` says (Python 3.11 calls them global): IPv4-compatible
#: (deprecated, ::a.b.c.d), local-use NAT64 (RFC 8215) and site-local (deprecated, fec0::/10).
REFUSED_V6 = tuple(ipaddress.IPv6Network(net) for net in ("::/96", "64:ff9b:1::/48", "fec0::/10"))
#: Well-known NAT64 prefix: the IPv4 address is its last 32 bits.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_v4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one leads to (mapped, 6to4, Teredo server and client, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in REFUSED_V6):
            return False
        embedded = embedded_v4(address)
        if embedded:
            return all(is_public(inner) for inner in embedded)
    return address.is_global and not address.is_multicast


def allow_entry(value: str) -> str:
    """An allow-list entry as ``vetted_target`` compares it: ``host:port`` (``[v6]:port``), lower-case;
    ValueError naming what is wrong."""
    text = value.strip().lower()
    try:
        parts = urlsplit(f"http://{text}")
        port = parts.port
    except ValueError:
        port = None
        parts = None
    host = parts.hostname if parts is not None else None
    if (
        parts is None
        or not host
        or port is None
        or not 0 < port < 65536
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"must be host:port (an IPv6 address in brackets: [::1]:8080), not {value!r}")
    written = f"[{host}]" if ":" in host else host
    return f"{written}:{port}"


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a well-formed http(s) URL without credentials, or UnsafeTarget(BAD_URL);
    no DNS look-up."""
    # Control characters: urlsplit drops tabs and line breaks, so the URL checked (and reached) would
    # not be the one stored and shown.
    if len(url) > MAX_URL or any(ord(char) < 32 or ord(char) == 127 for char in url.strip()):
        raise UnsafeTarget(Refusal.BAD_URL)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise UnsafeTarget(Refusal.BAD_URL) from error
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password:
        raise UnsafeTarget(Refusal.BAD_URL)
    return scheme, host, port or (443 if scheme == "https" else 80)


async def _addresses(host: str, port: int) -> list[str]:
    lookup = asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.wait_for(lookup, RESOLVE_TIMEOUT)
    except (OSError, UnicodeError, TimeoutError) as error:
        raise UnsafeTarget(Refusal.NO_HOST) from error
    found = [str(info[4][0]) for info in infos]
    if not found:
        raise UnsafeTarget(Refusal.NO_HOST)
    return found


async def vetted_target(url: str, allow: Collection[str]) -> VettedTarget:
    """Where ``url`` may be reached (``allow``: ``host:port`` entries exempt from the public-address
    rule), or UnsafeTarget."""
    scheme, host, port = check_url(url)
    written = f"[{host}]" if ":" in host else host
    addresses = await _addresses(host, port)
    if f"{written.lower()}:{port}" not in allow:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.partition("%")[0])):
                raise UnsafeTarget(Refusal.NOT_PUBLIC)
    return VettedTarget(scheme, host, port, addresses[0])


def pinned(url: str, target: VettedTarget) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request URL to the checked address, its Host header and httpx extensions (TLS server name)."""
    parts = urlsplit(url.strip())
    address = target.address
    netloc = f"[{address}]:{target.port}" if ":" in address else f"{address}:{target.port}"
    request_url = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != (443 if target.scheme == "https" else 80):
        host_header = f"{host_header}:{target.port}"
    return request_url, {"host": host_header}, {"sni_hostname": target.host}
