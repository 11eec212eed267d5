"""The store: typed SQLAlchemy models, repository functions, migrations."""
