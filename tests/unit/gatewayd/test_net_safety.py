"""Outbound targets: only http(s), public addresses unless allow-listed, the request pinned to the
checked address."""

from __future__ import annotations

import pytest

from gatewayd.net_safety import Refusal, UnsafeTarget, pinned, vetted_target


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@example.com/", "http://", "x" * 3000],
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
