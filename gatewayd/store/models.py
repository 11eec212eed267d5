"""Imports every model module so ``Base.metadata`` holds the whole schema (Alembic, tests)."""

from __future__ import annotations

from gatewayd.store import (
    accounts,
    apikeys,
    audit,
    campaigns,
    cluster,
    conversations,
    messages,
    pg_functions,
    pg_types,
    photos,
    premium,
    premium_months,
    rollups,
    schema_floor,
    services,
    subscribers,
    webhooks,
)
from gatewayd.store.base import Base

metadata = Base.metadata

__all__ = [
    "Base",
    "accounts",
    "apikeys",
    "audit",
    "campaigns",
    "cluster",
    "conversations",
    "messages",
    "metadata",
    "pg_functions",
    "pg_types",
    "photos",
    "premium",
    "premium_months",
    "rollups",
    "schema_floor",
    "services",
    "subscribers",
    "webhooks",
]
