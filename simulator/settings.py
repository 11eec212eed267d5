"""A strict reader of JSON / TOML mappings: every bad value names its key; unknown keys are errors.

Shared by the TOML config file and the HTTP control API, so both speak the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SettingsError(ValueError):
    """A setting that cannot be accepted; the message names the key (``carriers.movistar.tps``)."""


class Reader:
    """Typed access to one mapping; records which keys were read so leftovers can be rejected."""

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise SettingsError(f"{path or 'body'}: expected an object, got {_kind(data)}")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str) -> object:
        self._seen.add(name)
        return self._data.get(name)

    def string(self, name: str, default: str | None = None, *, allow_empty: bool = True) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{self.key(name)}: required")
            return default
        if not isinstance(value, str):
            raise SettingsError(f"{self.key(name)}: expected a string, got {_kind(value)}")
        if not allow_empty and not value.strip():
            raise SettingsError(f"{self.key(name)}: must not be empty")
        return value

    def number(
        self,
        name: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{self.key(name)}: required")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{self.key(name)}: expected a number, got {_kind(value)}")
        return _check_range(self.key(name), float(value), minimum, maximum, exclusive_minimum)

    def optional_number(
        self, name: str, *, minimum: float | None = None, exclusive_minimum: bool = False
    ) -> float | None:
        if self._data.get(name) is None:
            self._seen.add(name)
            return None
        return self.number(name, minimum=minimum, exclusive_minimum=exclusive_minimum)

    def integer(
        self, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{self.key(name)}: required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{self.key(name)}: expected an integer, got {_kind(value)}")
        return int(_check_range(self.key(name), value, minimum, maximum, False))

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{self.key(name)}: required")
            return default
        if not isinstance(value, bool):
            raise SettingsError(f"{self.key(name)}: expected true or false, got {_kind(value)}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise SettingsError(f"{self.key(name)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def strings(self, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{self.key(name)}: required")
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SettingsError(f"{self.key(name)}: expected a list of strings, got {_kind(value)}")
        return tuple(value)

    def sub(self, name: str) -> Reader | None:
        value = self.raw(name)
        return None if value is None else Reader(value, self.key(name))

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SettingsError(f"{self.key(name)}: expected an object, got {_kind(value)}")
        return value

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must not be silently ignored."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            where = self._path or "body"
            raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _check_range(
    key: str, value: float, minimum: float | None, maximum: float | None, exclusive_minimum: bool
) -> float:
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        relation = "greater than" if exclusive_minimum else "at least"
        raise SettingsError(f"{key}: must be {relation} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{key}: must be at most {maximum:g}, got {value:g}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
