"""Kinds of settings both the daemon and the simulator use, with the bounds that keep them sane."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from settingsfile.problems import MAX_INTEGER


class Settings(BaseModel):
    """A table of settings (or a JSON object): frozen once read, and a key nobody declared is an
    error, never a typo silently falling back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


#: The longest duration a setting may give (30 days): a lease or a backoff of thousands of years
#: overflows the timestamps computed from it, failing as surely as nan would.
MAX_SECONDS: Final = 30 * 86_400

#: A finite number: TOML (and float()) accept nan and inf, which pass any comparison and then break
#: every computation that uses them.
Number = Annotated[float, Field(allow_inf_nan=False)]
#: A duration in seconds, from 0 up to 30 days.
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
#: A duration in seconds above 0, up to 30 days.
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
#: An integer TOML can hold (64-bit).
Int64 = Annotated[int, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]


def at_least_one(what: str) -> BeforeValidator:
    """A list that must not be empty: ``needs at least one <what>`` (checked before its items)."""

    def check(value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            raise ValueError(f"needs at least one {what}")
        return value

    return BeforeValidator(check)
