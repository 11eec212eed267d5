"""What an MO becomes before it is stored: pure functions from SMPP PDUs to :class:`InboundMO`.

Kept apart from the pipeline (which owns tasks, futures and the database) so every rule here is
unit-tested without a loop: number normalisation, the short code, the reserved keyword, the
duplicate key that makes an SMSC's redelivery store once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from routing.errors import InvalidNumber
from routing.keywords import KeywordKind, KeywordMatch, KeywordSet, normalise_keyword, split_first_word
from routing.numbers import normalise_msisdn
from smpp.constants import TON, CommandStatus
from smpp.pdu import DataSM, DeliverSM
from smpp.text import decode_text


@dataclass(frozen=True, slots=True)
class BindInfo:
    """Where an MO came in: the carrier and the bind, and what the carrier implies."""

    carrier: str
    bind: str
    country: str
    short_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InboundMO:
    """One MO ready to store: normalised, with its duplicate key and reserved keyword (if any)."""

    carrier: str
    bind: str
    country: str
    #: The subscriber in E.164 ('+34600111222').
    msisdn: str
    short_code: str
    text: str
    data_coding: int
    received_at: datetime
    #: Same value for the same MO delivered twice (an SMSC retrying after a lost deliver_sm_resp).
    dedup_key: str
    #: The first word, normalised, that MO routing matches a service by ('alias hola' -> 'ALIAS').
    service_keyword: str | None
    parts_total: int = 1
    parts_received: int = 1
    #: True when a long MO was flushed before all its parts arrived (timeout / shutdown).
    incomplete: bool = False
    keyword: KeywordMatch | None = None

    @property
    def is_reserved(self) -> bool:
        """Opt-out, opt-in or help: handled by the gateway, never routed to a chat."""
        return self.keyword is not None

    @property
    def opt_out(self) -> bool:
        return self.keyword is not None and self.keyword.kind is KeywordKind.OPT_OUT

    @property
    def opt_in(self) -> bool:
        return self.keyword is not None and self.keyword.kind is KeywordKind.OPT_IN


class UnusableMO(ValueError):
    """The MO cannot be stored (unreadable source number); carries the command_status to answer."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


def short_code_of(destination: str, bind: BindInfo) -> str:
    """The premium short code the subscriber wrote to.

    Some SMSCs prefix the country code or a '+'; the longest configured short code that the
    destination ends with wins, otherwise the digits as given.
    """
    digits = destination.strip().removeprefix("+")
    if digits in bind.short_codes:  # the usual case: no longer code can also be a suffix of it
        return digits
    for code in sorted(bind.short_codes, key=len, reverse=True):
        if digits == code or digits.endswith(code):
            return code
    return digits


def subscriber_number(pdu: DeliverSM | DataSM, bind: BindInfo) -> str:
    """The MO's source as E.164, read the way the bind's carrier means it."""
    try:
        return normalise_msisdn(
            pdu.source_addr, bind.country, ton=pdu.source_addr_ton, npi=pdu.source_addr_npi
        )
    except InvalidNumber as error:
        if pdu.source_addr_ton not in (TON.UNKNOWN, TON.INTERNATIONAL, TON.NATIONAL):
            # a carrier sending TON 4/6 for subscriber numbers: try the digits without the hint
            try:
                return normalise_msisdn(pdu.source_addr, bind.country)
            except InvalidNumber:
                pass
        raise UnusableMO(f"source {pdu.source_addr!r}: {error}", CommandStatus.ESME_RINVSRCADR) from error


def dedup_key(
    carrier: str, msisdn: str, short_code: str, data_coding: int, payload: bytes, reference: int | None = None
) -> str:
    """A stable digest of what identifies one MO as the SMSC sent it (not when it arrived).

    The same subscriber texting the same words twice is a second MO for the user; the store keeps
    the key unique only within a short window, which is how long an SMSC keeps retrying.
    """
    fields = (carrier, msisdn, short_code, str(data_coding), "" if reference is None else str(reference))
    # each field followed by a unit separator, then the octets: one buffer, hashed in one call
    head = "".join(f"{field}\x1f" for field in fields).encode()
    return hashlib.blake2b(head + payload, digest_size=16).hexdigest()


def _normalised_first_word(text: str) -> str:
    """``normalise_keyword`` of the first word; a plain ASCII word (most MOs) needs only upper-casing."""
    first = split_first_word(text)[0]
    if first.isascii() and first.isalnum():
        return first.upper()
    return normalise_keyword(first)


def build_inbound(
    bind: BindInfo,
    pdu: DeliverSM | DataSM,
    payload: bytes,
    data_coding: int,
    keywords: KeywordSet,
    received_at: datetime,
    *,
    reference: int | None = None,
    parts_total: int = 1,
    parts_received: int = 1,
) -> InboundMO:
    """Normalise one MO (whole, or reassembled from parts whose joined ``payload`` is given)."""
    msisdn = subscriber_number(pdu, bind)
    short_code = short_code_of(pdu.destination_addr, bind)
    try:
        text = decode_text(payload, data_coding)
    except Exception:  # an unknown or broken coding: keep the octets readable rather than lose the MO
        text = payload.decode("latin-1")
    incomplete = parts_received < parts_total
    # the first word is read once, for routing and for the reserved keywords; a keyword in a
    # fragment is not a command: only whole messages count
    first_word = _normalised_first_word(text)
    reserved = not incomplete and keywords.kind_of(first_word) is not None
    keyword = keywords.detect(text) if reserved else None
    return InboundMO(
        carrier=bind.carrier,
        bind=bind.bind,
        country=bind.country,
        msisdn=msisdn,
        short_code=short_code,
        text=text,
        data_coding=data_coding,
        received_at=received_at,
        dedup_key=dedup_key(bind.carrier, msisdn, short_code, data_coding, payload, reference),
        parts_total=parts_total,
        parts_received=parts_received,
        incomplete=incomplete,
        keyword=keyword,
        service_keyword=first_word or None,
    )


def keyword_set(opt_out: tuple[str, ...], opt_in: tuple[str, ...], help_words: tuple[str, ...]) -> KeywordSet:
    """The configured reserved keywords of a country as routing's matcher."""
    return KeywordSet.of(opt_out=opt_out, opt_in=opt_in, help=help_words)
