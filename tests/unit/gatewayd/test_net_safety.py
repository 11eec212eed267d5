"""Outbound targets: only http(s), public addresses unless allow-listed, the request pinned to the
checked address."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from gatewayd import net_safety
from gatewayd.net_safety import Refusal, UnsafeTarget, allow_entry, is_public, pinned, vetted_target


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http://",
        "x" * 3000,
        # urlsplit drops tabs and line breaks anywhere: the URL checked would not be the one kept
        "https://203.0.113.7/a\r\nX-Injected: 1",
        "https://203.0.113.7/\tb",
        "https://example.com/\x7f",
    ],
)
async def test_only_plain_http_and_https_urls(url: str) -> None:
    with pytest.raises(UnsafeTarget) as refused:
        await vetted_target(url, ())
    assert refused.value.refusal is Refusal.BAD_URL


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/", "http://10.1.2.3/", "http://169.254.169.254/", "http://[::1]/"]
)
async def test_local_and_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UnsafeTarget) as refused:
        await vetted_target(url, ())
    assert refused.value.refusal is Refusal.NOT_PUBLIC


async def test_an_allowed_target_is_pinned_to_its_checked_address() -> None:
    target = await vetted_target("http://localhost:8080/hooks?x=1", ["localhost:8080"])
    url, headers, extensions = pinned("http://localhost:8080/hooks?x=1", target)
    assert url in ("http://127.0.0.1:8080/hooks?x=1", "http://[::1]:8080/hooks?x=1")
    assert headers == {"host": "localhost:8080"} and extensions == {"sni_hostname": "localhost"}


@pytest.mark.parametrize(
    "address",
    [
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:10.0.0.1",  # IPv4-mapped
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "fec0::1",  # site-local
        "::1",
        "fe80::1",
        "fc00::1",
    ],
)
def test_ipv6_forms_of_local_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "8.8.8.8"])
def test_public_addresses_are(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_entries_are_host_and_port_lower_cased() -> None:
    assert allow_entry(" Hooks.Example.COM:8443 ") == "hooks.example.com:8443"
    assert allow_entry("[::1]:80") == "[::1]:80"
    for bad in ["example.com", "example.com:0", "example.com:x", "::1:80", "a@b:80", "host:80/path", ":80"]:
        with pytest.raises(ValueError, match="must be host:port"):
            allow_entry(bad)


async def test_a_host_that_does_not_resolve_in_time_is_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers (no real DNS here): the look-up is given up, not waited on."""
    loop = asyncio.get_running_loop()
    asked = asyncio.Event()
    abandoned = asyncio.Event()

    async def never_answers(*args: object, **kwargs: object) -> list[object]:
        asked.set()
        try:
            await asyncio.Future()
        except asyncio.CancelledError:
            abandoned.set()
            raise
        raise AssertionError("unreachable")

    monkeypatch.setattr(loop, "getaddrinfo", never_answers)
    monkeypatch.setattr(net_safety, "RESOLVE_TIMEOUT", 0.05)
    with pytest.raises(UnsafeTarget) as refused:
        await vetted_target("https://hooks.example.com/in", ())
    assert refused.value.refusal is Refusal.NO_HOST
    assert asked.is_set() and abandoned.is_set()
