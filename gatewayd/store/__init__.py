"""The store: typed SQLAlchemy models, repository functions, migrations.

Importing any part of the store registers every table on ``Base.metadata``: a foreign key or a bulk
statement then always resolves the types of the tables it refers to (a half-registered metadata
makes PostgreSQL's DDL fail with "Can't generate DDL for NullType").
"""

from gatewayd.store import models as models  # noqa: F401  (registers every table)
