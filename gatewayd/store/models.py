"""Imports every model module so ``Base.metadata`` holds the whole schema (Alembic, tests)."""

from __future__ import annotations

from gatewayd.store import accounts, audit, conversations, messages, photos, services, subscribers, webhooks
from gatewayd.store.base import Base

metadata = Base.metadata

__all__ = [
    "Base",
    "accounts",
    "audit",
    "conversations",
    "messages",
    "metadata",
    "photos",
    "services",
    "subscribers",
    "webhooks",
]
