"""Validation errors as problems a person can act on: the key path, a message in plain words, and where
the value came from (``file:line`` or the environment variable).

pydantic validates and collects every error at once; what it lacks is the file and line of each
value (TOML parsers keep no positions) and a wording that matches the hand-written checks. Messages
are chosen by error type, as pydantic's documentation suggests for custom messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from settingsfile.locating import KeyPath, Origins

#: Integers beyond this are refused everywhere: TOML's integers are 64-bit, and a bigger one is a
#: mistake that would overflow what it sizes.
MAX_INTEGER: Final = (1 << 63) - 1

_MESSAGES: Final[dict[str, str]] = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "finite_number": "must be a finite number",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing_size": "must be an integer of at most 64 bits",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "needs at least {min_length} items",
    "too_long": "may hold at most {max_length} items",
    "enum": "must be one of {expected}",
    "literal_error": "must be one of {expected}",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a {table}",
    "model_type": "must be a {table}",
    "model_attributes_type": "must be a {table}",
    "dataclass_type": "must be a {table}",
}
#: Error types whose input is shown after the message (``must be at most 65535, not 99999``): never
#: one that a secret could fail, since the input is printed as given.
_SHOWN_INPUT: Final = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number", "int_from_float"}
    | {"int_parsing", "float_parsing", "bool_parsing", "enum", "literal_error", "int_type", "float_type"}
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid or missing value: ``key`` like ``carriers[0].binds[1].port``; ``source`` is a file
    path (then ``line`` is set, 1-based, when known) or where an override came from
    (``$GATEWAYD_...``)."""

    key: str
    message: str
    source: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.key}: {self.message}"


class ProblemAt(ValueError):
    """Raised by a validator about one key of its table, or by a table about one of its members' keys:
    the problem is reported at ``key`` below the validated value, not at the value itself."""

    def __init__(self, key: KeyPath | str, message: str) -> None:
        super().__init__(message)
        self.key: KeyPath = (key,) if isinstance(key, str) else key


def problems_at(*found: tuple[KeyPath, str]) -> ValidationError:
    """A :class:`ValidationError` for several keys at once, to raise from a validator: pydantic adds the
    validated value's own location in front of each key."""
    return ValidationError.from_exception_data(
        "settings",
        [
            InitErrorDetails(type=PydanticCustomError("invalid", message), loc=key, input=None)
            for key, message in found
        ],
    )


def describe(error: ErrorDetails, *, table: str = "table") -> str:
    """The message of one pydantic error in this project's words (``table``: what a mapping is called
    where the value came from, a TOML ``table`` or a JSON ``object``)."""
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])
    template = _MESSAGES.get(kind)
    if template is None:
        return error["msg"]
    if kind in ("too_short", "string_too_short") and context.get("min_length") == 1:
        return "must not be empty"
    if kind in ("too_short", "too_long") and context.get("field_type") == "Value":  # a secret string
        template = _MESSAGES[f"string_{kind}"]
    message = template.format(table=table, **{name: _bound(value) for name, value in context.items()})
    if kind in _SHOWN_INPUT and _shown(error["input"]) is not None:
        message += f", not {_shown(error['input'])}"
    return message


def _bound(value: object) -> object:
    """A limit as written in the declaration: 2592000, not the float pydantic compares with."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _shown(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, int | float):
        return f"{value:.15g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return repr(value[:80])
    return None


def error_key(error: ErrorDetails) -> KeyPath:
    """The key an error is about: its location, plus the key a :class:`ProblemAt` names. Union members
    and validator steps pydantic puts in the location (``function-after[...]``) are left out."""
    loc = tuple(part for part in error["loc"] if isinstance(part, int) or "[" not in part)
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, ProblemAt):
        loc += raised.key
    return loc


def format_key(path: KeyPath) -> str:
    """``carriers[0].binds[1].port`` for ``("carriers", 0, "binds", 1, "port")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def located(
    errors: Iterable[ErrorDetails],
    origins: Origins,
    *,
    prefix: KeyPath = (),
    relocate: Callable[[KeyPath], KeyPath] | None = None,
) -> list[Problem]:
    """Every error as a :class:`Problem` located through ``origins``; ``prefix`` is where the validated
    tree sits in the file; ``relocate`` may name where a value really came from (an inherited default).
    A problem found at several places of the tree but coming from one place is listed once."""
    found: list[Problem] = []
    for error in errors:
        path = prefix + error_key(error)
        if relocate is not None:
            path = relocate(path)
        source, line = origins.locate(path)
        problem = Problem(format_key(path), describe(error), source, line)
        if problem not in found:
            found.append(problem)
    return found
