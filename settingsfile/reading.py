"""Reading a settings file strictly and within bounds: a regular file of at most 1 MiB of UTF-8,
TOML nested at most 32 levels. Anything else is one clear :class:`FileProblem`, never a traceback or
a hang (a FIFO, ``/dev/zero``, a directory, a binary, a bomb of brackets)."""

from __future__ import annotations

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


class FileProblem(ValueError):
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
