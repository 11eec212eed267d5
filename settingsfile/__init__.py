"""Settings files read strictly and within bounds, and validation problems named by key and line.

A neutral package at the bottom of the floor, beside ``smpp``: the daemon's configuration and the
simulator's profiles both read their TOML through it, and both report what pydantic finds in the
same words. It imports no other package of the project.
"""

from settingsfile.locating import KeyPath, Origins, locate_keys
from settingsfile.problems import (
    MAX_INTEGER,
    Problem,
    ProblemAt,
    describe,
    error_key,
    format_key,
    located,
    problems_at,
)
from settingsfile.reading import (
    MAX_FILE_BYTES,
    MAX_NESTING,
    FileProblem,
    read_text_file,
    read_toml_file,
    too_deep,
)
from settingsfile.types import (
    MAX_SECONDS,
    Int64,
    Number,
    PositiveSeconds,
    Seconds,
    Settings,
    at_least_one,
)

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_INTEGER",
    "MAX_NESTING",
    "MAX_SECONDS",
    "FileProblem",
    "Int64",
    "KeyPath",
    "Number",
    "Origins",
    "Problem",
    "PositiveSeconds",
    "ProblemAt",
    "Seconds",
    "Settings",
    "at_least_one",
    "describe",
    "error_key",
    "format_key",
    "locate_keys",
    "located",
    "problems_at",
    "read_text_file",
    "read_toml_file",
    "too_deep",
]
