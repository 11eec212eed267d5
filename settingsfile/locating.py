"""Where each key of a TOML document is (tomllib keeps no positions), and where a value came from."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

#: A key's path in the parsed tree: table keys and array indices (``("carriers", 1, "binds", 0)``).
KeyPath = tuple[str | int, ...]

_BARE_KEY = r"[A-Za-z0-9_\-]+"
_QUOTED_KEY = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY_PART = rf"(?:{_BARE_KEY}|{_QUOTED_KEY})"
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=")
_KEY_PART_RE = re.compile(_KEY_PART)


def _split_dotted(dotted: str) -> list[str]:
    parts = []
    for match in _KEY_PART_RE.finditer(dotted):
        token = match.group(0)
        if token[0] == '"':
            token = tomllib.loads(f"k = {token}")["k"]
        elif token[0] == "'":
            token = token[1:-1]
        parts.append(token)
    return parts


def locate_keys(source: str) -> dict[KeyPath, int]:
    """Maps each key path and table header in a TOML document to its 1-based line.

    Array-of-tables elements get their index (``("carriers", 1, "binds", 0, "port")``). Lines inside
    multi-line strings are ignored; keys of inline tables are not listed (callers fall back to the
    longest listed prefix, i.e. the line of the inline table itself).
    """
    positions: dict[KeyPath, int] = {}
    array_counts: dict[KeyPath, int] = {}
    current: KeyPath = ()
    open_string: str | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        if open_string is not None:
            if line.count(open_string) % 2 == 1:
                open_string = None
            continue
        header = _HEADER_RE.match(line)
        if header:
            resolved: list[str | int] = []
            names = _split_dotted(header.group(2))
            for position, name in enumerate(names):
                resolved.append(name)
                is_last = position == len(names) - 1
                if is_last and header.group(1) == "[[":
                    key = tuple(resolved)
                    index = array_counts.get(key, 0)
                    array_counts[key] = index + 1
                    resolved.append(index)
                elif not is_last and tuple(resolved) in array_counts:
                    resolved.append(array_counts[tuple(resolved)] - 1)
            current = tuple(resolved)
            positions.setdefault(current, number)
            continue
        assign = _ASSIGN_RE.match(line)
        if assign:
            path = current + tuple(_split_dotted(assign.group(1)))
            positions.setdefault(path, number)
            rest = line[assign.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    open_string = quote
                    break
    return positions


@dataclass
class Origins:
    """Where the values of a settings tree came from: ``source`` (a file, with the ``positions`` of its
    keys) and ``overrides``, the key paths set from elsewhere, named by where (``$GATEWAYD_LOG_LEVEL``)."""

    source: str
    positions: dict[KeyPath, int] = field(default_factory=dict)
    overrides: dict[KeyPath, str] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[str, int | None]:
        """``(source, line)`` of the value at ``path``, or of the nearest table that holds it (a missing
        key is reported at its table's header); ``line`` is None for an override."""
        for length in range(len(path), -1, -1):
            override = self.overrides.get(path[:length])
            if override is not None:
                return override, None
            if length and path[:length] in self.positions:
                return self.source, self.positions[path[:length]]
        return self.source, 1 if self.positions else None

    def has(self, path: KeyPath) -> bool:
        """Whether ``path`` itself was given (in the file or as an override)."""
        return path in self.positions or path in self.overrides
