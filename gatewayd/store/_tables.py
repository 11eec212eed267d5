"""Core tables of the models, typed, and the chunks long IN (...) lists are cut into."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from sqlalchemy import Table

from gatewayd.store.base import Base

T = TypeVar("T")

#: Values per IN (...) list: far below SQLite's and PostgreSQL's bind-parameter limits.
IN_LIST_LIMIT = 900


def table_of(model: type[Base]) -> Table:
    """The model's Core table, typed (``__table__`` is declared as a generic FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def chunks(values: Sequence[T], size: int = IN_LIST_LIMIT) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size``, for one IN (...) list each."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
