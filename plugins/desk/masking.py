"""Hiding the client's phone number from those without the power to see it (``operator.see_msisdn``) in
the desk, the push page and the conversation browser; the rule itself is :mod:`gatewayd.masking`'s."""

from __future__ import annotations

from dataclasses import replace

from gatewayd.masking import masked
from gatewayd.store.repo_history import ThreadEntry


def masked_thread(entries: list[ThreadEntry], msisdn: str, show_msisdn: bool) -> list[ThreadEntry]:
    """A thread as the reader may see it: the MTs' texts with the number masked (see :func:`masked`)."""
    if show_msisdn:
        return entries
    return [
        replace(entry, text=masked(entry.text, msisdn, False)) if entry.direction == "mt" else entry
        for entry in entries
    ]
