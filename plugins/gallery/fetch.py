"""A URL import's fetch, refused unless it is safe to make from the panel's network:

- only ``http`` and ``https`` URLs, without user name or password;
- the host is resolved once and EVERY address it resolves to must be a public (global unicast) one: no
  loopback, private, shared, link-local, multicast, reserved or unspecified address, unless the URL's
  ``host:port`` is in ``[panel] gallery_fetch_allow``;
- the connection goes to the address that was checked (the URL's host kept in the Host header and as
  the TLS server name, the certificate checked against it): a second DNS answer cannot send it elsewhere;
- redirects are refused (the admin gives the image's final address), no proxy from the environment;
- at most ``MAX_BYTES`` bytes, streamed and cut there, within ``TIMEOUT`` seconds in all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from plugins.gallery.images import MAX_BYTES, TOO_LARGE
from translations import N_

TIMEOUT: Final = 10.0
MAX_URL = 2000


class FetchRefused(Exception):
    """The URL was not fetched; ``message`` (English, in the catalogue) says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


BAD_URL = N_("Give an http:// or https:// address of an image.")
NO_HOST = N_("The address's host name could not be resolved.")
NOT_PUBLIC = N_(
    "The address leads to a local, private or reserved network (loopback, 10.x, 192.168.x, 169.254.x…): "
    "the gallery only fetches from public addresses."
)
REDIRECT = N_("The address redirects elsewhere: give the image's final address.")
HTTP_ERROR = N_("The server did not send the image (it answered with an error).")
UNREACHABLE = N_("The server could not be reached or did not answer in time.")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


async def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise FetchRefused(NO_HOST) from error
    found = [str(info[4][0]) for info in infos]
    if not found:
        raise FetchRefused(NO_HOST)
    return found


async def vetted_address(url: str, allow: Collection[str]) -> tuple[str, str, int, str]:
    """(scheme, host, port, the checked address to connect to) or FetchRefused."""
    if len(url) > MAX_URL:
        raise FetchRefused(BAD_URL)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise FetchRefused(BAD_URL) from error
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or parts.username is not None or parts.password:
        raise FetchRefused(BAD_URL)
    port = port or (443 if scheme == "https" else 80)
    written = f"[{host}]" if ":" in host else host
    addresses = await _addresses(host, port)
    if f"{written}:{port}" not in allow:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.partition("%")[0])):
                raise FetchRefused(NOT_PUBLIC)
    return scheme, host, port, addresses[0]


async def fetch(url: str, allow: Collection[str]) -> bytes:
    """The body at ``url`` (at most MAX_BYTES bytes), or FetchRefused."""
    scheme, host, port, address = await vetted_address(url, allow)
    parts = urlsplit(url.strip())
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if scheme == "https" else 80):
        host_header = f"{host_header}:{port}"
    timeout = httpx.Timeout(TIMEOUT)
    body = bytearray()
    try:
        async with (
            asyncio.timeout(TIMEOUT),
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET",
                target,
                headers={"host": host_header, "accept": "image/*"},
                extensions={"sni_hostname": host},
            ) as response,
        ):
            if response.is_redirect:
                raise FetchRefused(REDIRECT)
            if response.status_code != 200:
                raise FetchRefused(HTTP_ERROR)
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_BYTES:
                    raise FetchRefused(TOO_LARGE)
    except (httpx.HTTPError, TimeoutError, OSError) as error:
        raise FetchRefused(UNREACHABLE) from error
    return bytes(body)
