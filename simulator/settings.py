"""A strict reader of JSON / TOML mappings: every bad value names its key; unknown keys are errors.

Shared by the TOML config file and the HTTP control API, so both speak the same words. The guarded
reading of a settings file (:func:`read_toml_file`) is shared with the daemon's configuration, which
may hold the ``[simulator]`` table and is read under the same rules.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from typing import Any, Final

#: The most a settings file may hold: a wrong path (a device, a log) must fail at once, not fill memory.
MAX_FILE_BYTES: Final = 1 << 20
#: Deeper than any setting goes; data nested deeper is refused before anything walks it recursively.
MAX_NESTING: Final = 32
#: Integers are 64-bit, as in TOML: a bigger one is a mistake and would overflow what it sizes.
MAX_INTEGER: Final = (1 << 63) - 1
#: The longest duration a setting may give (30 days): longer than any SMSC keeps a message.
MAX_SECONDS: Final = 30 * 86_400.0


class SettingsError(ValueError):
    """A setting that cannot be accepted; the message names the key (``carriers.movistar.tps``)."""


class FileProblem(SettingsError):
    """A settings file that cannot be used at all: ``reason`` is one line, ``line`` is set when known."""

    def __init__(self, path: str | os.PathLike[str], reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")


def read_text_file(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; :class:`FileProblem` otherwise.

    Opened without blocking and checked before reading: a FIFO, a device such as ``/dev/zero`` or a
    directory is refused at once instead of hanging or filling memory."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise FileProblem(path, "not a regular file")
            data = _read_at_most(descriptor, limit + 1)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise FileProblem(path, f"cannot read: {error.strerror or error}") from None
    if len(data) > limit:
        raise FileProblem(path, f"too large: more than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        reason = f"not valid UTF-8: byte 0x{data[error.start]:02x} at byte offset {error.start}"
        raise FileProblem(path, reason, line) from None


def _read_at_most(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(descriptor, min(size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_toml_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """A TOML settings file, parsed, with its text (for key positions); :class:`FileProblem` otherwise."""
    text = read_text_file(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        position = re.search(r"at line (\d+)", str(error))  # Python 3.11 has no error.lineno
        raise FileProblem(
            path, f"not valid TOML: {error}", int(position.group(1)) if position else None
        ) from None
    except RecursionError:
        raise FileProblem(path, f"nested deeper than {MAX_NESTING} levels") from None
    except ValueError:  # int() refuses more than 4,300 digits; TOML integers are 64-bit anyway
        raise FileProblem(path, "not valid TOML: an integer with thousands of digits") from None
    if too_deep(data):
        raise FileProblem(path, f"nested deeper than {MAX_NESTING} levels")
    return data, text


def too_deep(data: object, limit: int = MAX_NESTING) -> bool:
    """True when lists and mappings in ``data`` nest more than ``limit`` levels (walked without recursion)."""
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


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
        return _check_range(
            self.key(name), finite(self.key(name), value), minimum, maximum, exclusive_minimum
        )

    def seconds(
        self, name: str, default: float | None = None, *, positive: bool = False, maximum: float = MAX_SECONDS
    ) -> float:
        """A duration: from 0 (above 0 when ``positive``) up to ``maximum``. A longer one is a mistake,
        and one beyond the clock's range would break every timer it sets."""
        return self.number(name, default, minimum=0, maximum=maximum, exclusive_minimum=positive)

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
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            raise SettingsError(f"{self.key(name)}: expected a 64-bit integer, got {_kind(value)}")
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


def finite(key: str, value: int | float) -> float:
    """``value`` as a float; nan, infinity (JSON's 1e999, TOML's nan and inf) and integers beyond the
    float range are refused: they pass every range check and then break whatever computes with them."""
    try:
        number = float(value)
    except OverflowError:
        raise SettingsError(f"{key}: expected a finite number, got {_kind(value)}") from None
    if not math.isfinite(number):
        raise SettingsError(f"{key}: expected a finite number, got {number}")
    return number


def _check_range(
    key: str, value: float, minimum: float | None, maximum: float | None, exclusive_minimum: bool
) -> float:
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        relation = "greater than" if exclusive_minimum else "at least"
        raise SettingsError(f"{key}: must be {relation} {minimum:.15g}, got {value:.15g}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{key}: must be at most {maximum:.15g}, got {value:.15g}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int) and not -MAX_INTEGER <= value <= MAX_INTEGER:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
