"""What routing looks at: small frozen views of an MO and of an MT, built by the pipelines.

Fields are normalised once here (carrier names case-folded, country codes upper-cased, the MO's
service keyword extracted) so that matching a rule is plain comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.errors import InvalidNumber
from routing.keywords import service_keyword
from routing.numbers import country_of, is_e164


def normalise_carrier(name: str) -> str:
    """Carrier names compare case-insensitively: ' Movistar ' -> 'movistar'."""
    return name.strip().casefold()


def normalise_country(iso: str) -> str:
    return iso.strip().upper()


@dataclass(frozen=True, slots=True)
class MOContext:
    """An incoming message as MO routing sees it."""

    #: The premium short code the subscriber wrote to ('997745').
    short_code: str
    #: The decoded message text.
    text: str
    #: The carrier whose bind delivered it.
    carrier: str
    #: The subscriber, in E.164.
    source_e164: str
    #: The carrier's country (ISO); taken from the subscriber's number when not given.
    country: str | None = None
    #: The first word of ``text``, normalised ('alias hola' -> 'ALIAS'); derived, not passed in.
    keyword: str | None = field(init=False)

    def __post_init__(self) -> None:
        if not is_e164(self.source_e164):
            raise InvalidNumber(self.source_e164, "MO source must be in E.164 form")
        country = normalise_country(self.country) if self.country else country_of(self.source_e164)
        object.__setattr__(self, "short_code", self.short_code.strip().removeprefix("+"))
        object.__setattr__(self, "carrier", normalise_carrier(self.carrier))
        object.__setattr__(self, "country", country)
        object.__setattr__(self, "keyword", service_keyword(self.text))

    @classmethod
    def normalised(
        cls,
        *,
        short_code: str,
        text: str,
        carrier: str,
        source_e164: str,
        country: str | None,
        keyword: str | None,
    ) -> MOContext:
        """A context from values already in normal form, skipping the checks of the constructor.

        For a pipeline that has just produced them itself (E.164 number, bare short code, case-folded
        carrier, upper-case country, the first word through ``service_keyword``): it saves redoing
        that work per MO. Untrusted input goes through the constructor.
        """
        ctx = object.__new__(cls)
        set_field = object.__setattr__
        set_field(ctx, "short_code", short_code)
        set_field(ctx, "text", text)
        set_field(ctx, "carrier", carrier)
        set_field(ctx, "source_e164", source_e164)
        set_field(ctx, "country", country)
        set_field(ctx, "keyword", keyword)
        return ctx


@dataclass(frozen=True, slots=True)
class MTContext:
    """An outgoing message as MT routing sees it."""

    #: The subscriber, in E.164.
    destination_e164: str
    #: The source address the MT leaves from (short code or sender id), if routing depends on it.
    short_code: str | None = None
    #: The subscriber's carrier, when known (from their MOs or a portability look-up).
    carrier: str | None = None
    #: The subscriber's country (ISO); taken from the destination number when not given.
    country: str | None = None
    #: The bind the subscriber's last MO came in on: a reply prefers to leave by it.
    inbound_bind: str | None = None

    def __post_init__(self) -> None:
        if not is_e164(self.destination_e164):
            raise InvalidNumber(self.destination_e164, "MT destination must be in E.164 form")
        country = normalise_country(self.country) if self.country else country_of(self.destination_e164)
        object.__setattr__(self, "country", country)
        if self.carrier is not None:
            object.__setattr__(self, "carrier", normalise_carrier(self.carrier) or None)
        if self.short_code is not None:
            object.__setattr__(self, "short_code", self.short_code.strip().removeprefix("+") or None)
