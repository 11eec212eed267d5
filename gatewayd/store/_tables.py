"""Core tables of the models, typed; IN (...) lists: one statement text whatever their length, and
the chunks long ones are cut into."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Boolean, Table, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

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


class Among(ColumnElement[bool]):
    """``column IN (values)`` as one statement text whatever the number of values (:func:`among`)."""

    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
        ("listed", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no "= 1" where booleans are integers

    def __init__(self, column: Any, values: Iterable[object]) -> None:
        listed = list(values)
        self.column: ColumnElement[Any] = column.expression
        self.array: BindParameter[Any] = bindparam(None, listed, type_=ARRAY(self.column.type))
        self.listed: BindParameter[Any] = bindparam(None, listed, expanding=True, type_=self.column.type)

    @property
    def _from_objects(self) -> list[Any]:
        # the column's table, for a SELECT that takes its FROM from its WHERE
        return list(self.column._from_objects)


def among(column: Any, values: Iterable[object]) -> ColumnElement[bool]:
    """``column IN (values)``. SQLAlchemy's ``in_()`` renders a parameter per value, so each list
    length is another statement that PostgreSQL parses, plans and keeps prepared in the backend's
    memory (asyncpg keeps 100 per connection): a producer sending batches of any size filled its
    backend with a hundred variants of one look-up (bench/soak.py). On PostgreSQL this sends the list
    as one array, ``column = ANY($1)``; on SQLite (no arrays) it is the expanding IN."""
    return Among(column, values)


@compiles(Among)
def _expanding_in(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.listed), **kw)


@compiles(Among, "postgresql")
def _any_of_array(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.array, **kw)})"
