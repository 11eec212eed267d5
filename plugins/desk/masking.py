"""Hiding the client's phone number from those without the power to see it (``operator.see_msisdn``):
the one place the panel does it, for the desk, the push page and the conversation browser."""

from __future__ import annotations

from dataclasses import replace

from gatewayd.store.repo_history import ThreadEntry

#: What an operator without the MSISDN permission sees instead of a subscriber's number.
MASK = "\u2022"


def masked(text: str, msisdn: str, show_msisdn: bool) -> str:
    """``text`` as the panel shows it: the subscriber's number (as ``{telefono}`` put it in an MT)
    hidden from an operator without the MSISDN permission."""
    if show_msisdn or not msisdn:
        return text
    return text.replace(msisdn, MASK * len(msisdn))


def masked_thread(entries: list[ThreadEntry], msisdn: str, show_msisdn: bool) -> list[ThreadEntry]:
    """A thread as the reader may see it: the MTs' texts with the number masked (see :func:`masked`)."""
    if show_msisdn:
        return entries
    return [
        replace(entry, text=masked(entry.text, msisdn, False)) if entry.direction == "mt" else entry
        for entry in entries
    ]
