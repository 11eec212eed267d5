"""The simulator's refusals: a value that cannot be accepted, named by its key."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting or a request that cannot be accepted; the message names the key (``to: '12' is not a
    short code of movistar``). The control API answers it with 400."""
