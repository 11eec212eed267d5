"""A URL import's fetch, refused unless it is safe to make from the panel's network:

- only ``http`` and ``https`` URLs, without user name or password;
- the target vetted by :mod:`gatewayd.net_safety`: the host is resolved once and EVERY address it
  resolves to must be a public (global unicast) one: no loopback, private, shared, link-local,
  multicast, reserved or unspecified address, unless the URL's ``host:port`` is in
  ``[panel] gallery_fetch_allow``;
- the connection goes to the address that was checked (the URL's host kept in the Host header and as
  the TLS server name, the certificate checked against it): a second DNS answer cannot send it elsewhere;
- redirects are refused (the admin gives the image's final address), no proxy from the environment;
- at most ``MAX_BYTES`` bytes, streamed and cut there, within ``TIMEOUT`` seconds in all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Final

import httpx

from gatewayd.net_safety import Refusal, UnsafeTarget, pinned, vetted_target
from plugins.gallery.images import MAX_BYTES, TOO_LARGE
from translations import N_

TIMEOUT: Final = 10.0


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


_REASONS = {Refusal.BAD_URL: BAD_URL, Refusal.NO_HOST: NO_HOST, Refusal.NOT_PUBLIC: NOT_PUBLIC}


async def fetch(url: str, allow: Collection[str]) -> bytes:
    """The body at ``url`` (at most MAX_BYTES bytes), or FetchRefused."""
    try:
        target = await vetted_target(url, allow)
    except UnsafeTarget as error:
        raise FetchRefused(_REASONS[error.refusal]) from error
    request_url, headers, extensions = pinned(url, target)
    timeout = httpx.Timeout(TIMEOUT)
    body = bytearray()
    try:
        async with (
            asyncio.timeout(TIMEOUT),
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET", request_url, headers={**headers, "accept": "image/*"}, extensions=extensions
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
