"""The functions the store's statements call on PostgreSQL, created with the schema: by migration
(0023) and by ``metadata.create_all`` (tests) alike.

``echat_needs_transaction(reason)`` raises ``errors.NEEDS_TRANSACTION``, ``reason`` as its detail: a
statement sent alone (its own transaction, committed when it ends) calls it when it finds that its
batch needs more than the statement, which then commits nothing (``errors.NeedsTransaction``).
Migration 0023 holds the same text (a migration never changes): a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import DDL, event

from gatewayd.store.base import Base
from gatewayd.store.errors import NEEDS_TRANSACTION

#: Called by a statement with its reason (text): never returns.
NEEDS_TRANSACTION_FUNCTION = "echat_needs_transaction"

_NEEDS_TRANSACTION_DDL = f"""
CREATE OR REPLACE FUNCTION {NEEDS_TRANSACTION_FUNCTION}(reason text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '{NEEDS_TRANSACTION}', MESSAGE = 'the batch needs a transaction',
        DETAIL = reason;
END
$$
"""

event.listen(
    Base.metadata,
    "after_create",
    DDL(_NEEDS_TRANSACTION_DDL).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
)
