"""Typed reading of plain mappings (TOML tables, database rows) with errors that name the field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from routing.errors import InvalidDefinition


class FieldReader:
    """Reads typed values out of ``data``; every problem raises ``error(subject, reason, field=key)``.

    ``None`` counts as absent, so a database row with NULL columns reads like a dict without the keys.
    """

    def __init__(
        self,
        data: Mapping[str, object],
        *,
        subject: str,
        error: type[InvalidDefinition],
        allowed: Iterable[str],
    ) -> None:
        if not isinstance(data, Mapping):
            raise error(subject, f"expected a mapping of fields, got {type(data).__name__}")
        self.data = data
        self.subject = subject
        self.error = error
        unknown = sorted(str(key) for key in data if key not in set(allowed))
        if unknown:
            raise error(subject, f"unknown field (allowed: {', '.join(sorted(allowed))})", field=unknown[0])

    def fail(self, key: str, reason: str) -> InvalidDefinition:
        return self.error(self.subject, reason, field=key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> object:
        return self.data.get(key)

    def optional_str(self, key: str) -> str | None:
        """A stripped string, or ``None`` when absent or blank."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {type(value).__name__}")
        return value.strip() or None

    def required_str(self, key: str) -> str:
        value = self.optional_str(key)
        if value is None:
            raise self.fail(key, "is required and must be a non-empty string")
        return value

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        # bool is an int subclass; `true` where a number is expected is a typo, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        # SQLite and some drivers hand booleans back as 0 / 1.
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail(key, f"must be true or false, got {value!r}")

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of non-empty strings; a single string is a list of one."""
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise self.fail(key, f"must be a list of strings, got {type(value).__name__}")
        result: list[str] = []
        for position, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(key, f"item {position} must be a non-empty string, got {item!r}")
            result.append(item.strip())
        return tuple(result)
