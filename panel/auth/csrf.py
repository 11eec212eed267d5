"""The anonymous visitor's CSRF token (the sign-in form's), signed with the panel's secret key.

A signed-in user's token lives in the server-side session. Before sign-in there is no session, so
the token is a double-submit cookie; signing it means the panel accepts only tokens it issued itself:
a value planted in the cookie by someone else (a sibling subdomain, a plain-HTTP page) is not one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import urlsafe_b64encode

from pydantic import SecretStr

# A sign-in form older than this is refused ("the form has expired"); reloading it gives a new token.
ANONYMOUS_TOKEN_LIFETIME_SECONDS = 12 * 3600
_MAX_TOKEN_LENGTH = 128  # what we issue is about 90 characters
_PURPOSE = b"echat.panel.anonymous-csrf\x00"


def _signature(key: SecretStr, payload: str) -> str:
    digest = hmac.new(
        key.get_secret_value().encode("utf-8"), _PURPOSE + payload.encode("ascii"), hashlib.sha256
    )
    return urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def issue_anonymous_token(key: SecretStr, now: float) -> str:
    """``nonce.issued_at.signature``: random, dated, and verifiable with the key alone."""
    payload = f"{secrets.token_urlsafe(24)}.{int(now)}"
    return f"{payload}.{_signature(key, payload)}"


def anonymous_token_valid(token: str, key: SecretStr, now: float) -> bool:
    """Issued by this panel (same key) and not older than its lifetime."""
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        return False
    payload, _, signature = token.rpartition(".")
    _, _, issued = payload.partition(".")
    if not issued.isdigit():
        return False
    if not 0 <= now - int(issued) <= ANONYMOUS_TOKEN_LIFETIME_SECONDS:
        return False
    return hmac.compare_digest(signature, _signature(key, payload))
