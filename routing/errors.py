"""Errors of the routing package: one root, one class per kind of mistake.

``InvalidAddress`` / ``InvalidNumber`` are about a message's data (a sender we cannot understand);
``InvalidDefinition`` and its subclasses are about configuration (a rule, a table, carrier quirks,
keyword lists) and name the thing and the field that is wrong, so an operator can fix the row;
``NoRoute`` means a valid message has nowhere to go right now.
"""

from __future__ import annotations


class RoutingError(Exception):
    """Root of every error raised by the ``routing`` package."""


class InvalidAddress(RoutingError, ValueError):
    """An SMPP address we cannot use (wrong characters, too long, wrong kind of address)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.reason = reason


class InvalidNumber(InvalidAddress):
    """A phone number that cannot be turned into a plausible E.164 MSISDN."""


class InvalidDefinition(RoutingError, ValueError):
    """A configuration object (rule, table, quirks, keyword list) that does not validate.

    ``subject`` names the object (``"MO rule 'alias-es'"``), ``field`` the offending key if there is one.
    """

    def __init__(self, subject: str, reason: str, *, field: str | None = None) -> None:
        where = f"{subject}, field {field!r}" if field is not None else subject
        super().__init__(f"{where}: {reason}")
        self.subject = subject
        self.field = field
        self.reason = reason


class InvalidRule(InvalidDefinition):
    """An MO/MT routing rule or routing table that does not validate."""


class InvalidQuirks(InvalidDefinition):
    """Carrier quirks that do not validate."""


class InvalidKeywords(InvalidDefinition):
    """A reserved-keyword configuration that does not validate."""


class NoRoute(RoutingError):
    """No bind can carry this MT now: no rule matched, or every bind of the matching rule is down."""

    def __init__(self, message: str, *, rule: str | None = None, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rule = rule
        self.candidates = candidates
