"""The store as the pipelines use it: the session factory of one engine, and each statement set whose
SQL differs between SQLite and PostgreSQL in that engine's dialect.

The dialect is chosen once, here, when the store is made from the engine (as SQLAlchemy picks a
dialect for an engine), never by an ``if`` per call. Every statement set still takes the caller's
``AsyncSession``: the caller frames the transaction; but ``mos_alone`` (PostgreSQL only), whose one
statement is its own transaction. Statements that are the same on both databases stay plain
repository functions (``repo_*``, ``mt.queue``, ``mt.status``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gatewayd.store._pg import Autocommits
from gatewayd.store.cluster import ClusterStatements, PostgreSQLClusterStatements, SQLiteClusterStatements
from gatewayd.store.engine import session_factory
from gatewayd.store.mt.claims import Claims, PostgreSQLClaims, SQLiteClaims
from gatewayd.store.mt.queue import MTInserts, PostgreSQLMTInserts
from gatewayd.store.mt.receipts import PostgreSQLReceipts, Receipts, SQLiteReceipts
from gatewayd.store.mt.results import PostgreSQLResults, Results, SQLiteResults
from gatewayd.store.mt.status import PostgreSQLStatuses, SQLiteStatuses, Statuses
from gatewayd.store.repo_conversations import (
    ConversationOpening,
    PostgreSQLConversationOpening,
    SQLiteConversationOpening,
)
from gatewayd.store.repo_mo import MOAlone, MOIngest, PostgreSQLMOIngest, SQLiteMOIngest
from gatewayd.store.repo_mo_parts import MOPartLocks, PostgreSQLMOPartLocks, SQLiteMOPartLocks
from gatewayd.store.repo_subscribers import (
    PostgreSQLSubscriberUpserts,
    SQLiteSubscriberUpserts,
    SubscriberUpserts,
)
from gatewayd.store.rollups_rebuild import POSTGRESQL, SQLITE, RollupRebuild
from gatewayd.store.server_settings import PostgreSQLServerSettings, ServerSettings
from gatewayd.store.webhooks import DeliveryQueue, PostgreSQLDeliveryQueue, SQLiteDeliveryQueue


class UnsupportedDatabase(ValueError):
    """The engine's database is neither SQLite nor PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Store:
    """One engine's sessions and statement sets. Build it with :meth:`for_engine`."""

    sessions: async_sessionmaker[AsyncSession]
    #: How many write transactions of one pipeline may usefully run at once: two on PostgreSQL (one
    #: commits while the next is written), one on SQLite (a single writer: a second would only queue).
    concurrent_writers: int
    subscribers: SubscriberUpserts
    conversations: ConversationOpening
    mos: MOIngest
    #: A plain MO batch stored by one statement in a transaction of its own (PostgreSQL; None on
    #: SQLite, whose transactions cost no round trip).
    mos_alone: MOAlone | None
    mo_parts: MOPartLocks
    #: The outbox's MT rows (``Outbox(inserts=...)``).
    mt_inserts: MTInserts
    claims: Claims
    results: Results
    receipts: Receipts
    statuses: Statuses
    rollup_rebuild: RollupRebuild
    webhook_queue: DeliveryQueue
    #: Bind ownership among the daemons (``gatewayd.cluster``, ``gatewayd status``).
    cluster: ClusterStatements
    #: Whether a statement can be given a time limit (PostgreSQL's ``statement_timeout``; SQLite has none).
    statement_timeouts: bool
    #: The server's settings a daemon checks when it starts (autovacuum).
    server_settings: ServerSettings

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> Store:
        """The store of ``engine``, its statement sets in the engine's dialect."""
        name = engine.dialect.name
        if name == "postgresql":
            return cls._postgresql(session_factory(engine), Autocommits(engine))
        if name == "sqlite":
            return cls._sqlite(session_factory(engine))
        raise UnsupportedDatabase(f"the store runs on SQLite or PostgreSQL, not on {name}")

    @classmethod
    def _sqlite(cls, sessions: async_sessionmaker[AsyncSession]) -> Store:
        subscribers = SQLiteSubscriberUpserts()
        conversations = SQLiteConversationOpening()
        statuses = SQLiteStatuses()
        receipts = SQLiteReceipts(statuses)
        return cls(
            sessions=sessions,
            concurrent_writers=1,
            subscribers=subscribers,
            conversations=conversations,
            mos=SQLiteMOIngest(subscribers, conversations),
            mos_alone=None,
            mo_parts=SQLiteMOPartLocks(),
            mt_inserts=MTInserts(),
            claims=SQLiteClaims(statuses),
            results=SQLiteResults(receipts, statuses),
            receipts=receipts,
            statuses=statuses,
            rollup_rebuild=RollupRebuild(SQLITE),
            webhook_queue=SQLiteDeliveryQueue(),
            cluster=SQLiteClusterStatements(),
            statement_timeouts=False,
            server_settings=ServerSettings(),
        )

    @classmethod
    def _postgresql(cls, sessions: async_sessionmaker[AsyncSession], autocommits: Autocommits) -> Store:
        subscribers = PostgreSQLSubscriberUpserts()
        conversations = PostgreSQLConversationOpening()
        statuses = PostgreSQLStatuses()
        receipts = PostgreSQLReceipts(statuses)
        mos = PostgreSQLMOIngest(subscribers, conversations)
        return cls(
            sessions=sessions,
            concurrent_writers=2,
            subscribers=subscribers,
            conversations=conversations,
            mos=mos,
            mos_alone=MOAlone(autocommits, mos),
            mo_parts=PostgreSQLMOPartLocks(),
            mt_inserts=PostgreSQLMTInserts(),
            claims=PostgreSQLClaims(statuses),
            results=PostgreSQLResults(receipts, statuses),
            receipts=receipts,
            statuses=statuses,
            rollup_rebuild=RollupRebuild(POSTGRESQL),
            webhook_queue=PostgreSQLDeliveryQueue(),
            cluster=PostgreSQLClusterStatements(),
            statement_timeouts=True,
            server_settings=PostgreSQLServerSettings(),
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed when the block ends (rolled back if it raises)."""
        async with self.sessions() as session, session.begin():
            yield session
