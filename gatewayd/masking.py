"""Hiding a subscriber's phone number from a reader not allowed to see it: the panel's operators without
``operator.see_msisdn`` and API keys without the ``msisdn`` scope. The one rule, for both."""

from __future__ import annotations

#: What a reader without the right to the MSISDN sees instead of each of its digits.
MASK = "\u2022"


def masked(text: str, msisdn: str, show_msisdn: bool) -> str:
    """``text`` with the subscriber's number (as ``{telefono}`` put it in an MT, or as an error quotes
    the destination) hidden unless ``show_msisdn``."""
    if show_msisdn or not msisdn:
        return text
    return text.replace(msisdn, MASK * len(msisdn))
