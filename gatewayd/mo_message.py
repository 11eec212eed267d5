"""What an MO becomes before it is stored: pure functions from SMPP PDUs to :class:`InboundMO` (a whole
message) or :class:`InboundPart` (one part of a long one, stored until its message can be assembled).

Kept apart from the pipeline (which owns tasks, futures and the database) so every rule here is
unit-tested without a loop: number normalisation, the short code, the reserved keyword, the text
the store keeps, the content keys that recognise an SMSC's redelivery.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from routing.errors import InvalidNumber
from routing.keywords import KeywordKind, KeywordMatch, KeywordSet, normalise_keyword, split_first_word
from routing.numbers import normalise_msisdn, to_international
from smpp.concat import ConcatInfo
from smpp.constants import TON, CommandStatus
from smpp.pdu import DataSM, DeliverSM
from smpp.text import REPLACEMENT_CHAR, Alphabet, alphabet_for, decode_text

#: Longest short code the store holds (``mo_messages.short_code``): a longer destination is no short code.
MAX_SHORT_CODE = 16
#: What the store never keeps in a text: C0 and C1 control characters but TAB, LF and CR (PostgreSQL
#: cannot store U+0000 at all; the others are invisible, or move a terminal's cursor in a log), and
#: UTF-16 surrogates (not characters; no UTF-8 encoder accepts one).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: Codings whose octets are not text: the store keeps them as they came, beside their Latin-1 reading.
_NOT_TEXT = frozenset({None, Alphabet.OCTETS})
#: Content keys digest the subscriber's number in E.164 form (see :func:`dedup_key`).
_KEYED_NUMBER = "+"


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
    #: The subscriber: E.164 digits without '+' ('34600111222'), as the daemon and the store hold numbers.
    msisdn: str
    short_code: str
    text: str
    data_coding: int
    received_at: datetime
    #: The content as the SMSC sent it, the same for the same MO delivered twice (see ``dedup_key``).
    dedup_key: str
    #: The first word, normalised, that MO routing matches a service by ('alias hola' -> 'ALIAS').
    service_keyword: str | None
    parts_total: int = 1
    parts_received: int = 1
    #: True when a long MO was flushed before all its parts arrived (timeout / shutdown).
    incomplete: bool = False
    keyword: KeywordMatch | None = None
    #: The octets as the SMSC sent them, when ``text`` cannot say everything they do (see ``stored_text``).
    raw: bytes | None = None

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


@dataclass(frozen=True, slots=True)
class InboundPart:
    """One part of a long MO: stored (and answered) on its own, assembled with the others once they are
    all stored, whichever bind or daemon run they came through."""

    carrier: str
    bind: str
    country: str
    msisdn: str
    short_code: str
    reference: int
    total: int
    part_number: int
    data_coding: int
    payload: bytes
    received_at: datetime
    #: The part's content as the SMSC sent it: the same for the same part delivered twice.
    dedup_key: str
    #: The message it belongs to: carrier, subscriber, short code, reference and number of parts.
    set_key: str


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
    """The MO's source as E.164 digits without '+', read the way the bind's carrier means it."""
    try:
        return to_international(
            normalise_msisdn(pdu.source_addr, bind.country, ton=pdu.source_addr_ton, npi=pdu.source_addr_npi)
        )
    except InvalidNumber as error:
        if pdu.source_addr_ton not in (TON.UNKNOWN, TON.INTERNATIONAL, TON.NATIONAL):
            # a carrier sending TON 4/6 for subscriber numbers: try the digits without the hint
            try:
                return to_international(normalise_msisdn(pdu.source_addr, bind.country))
            except InvalidNumber:
                pass
        # the reason without the address: it is (or may be) a subscriber's number, which logs never show
        raise UnusableMO(
            f"source address (TON {pdu.source_addr_ton}, NPI {pdu.source_addr_npi}) {error.reason}",
            CommandStatus.ESME_RINVSRCADR,
        ) from error


def destination_short_code(pdu: DeliverSM | DataSM, bind: BindInfo) -> str:
    """:func:`short_code_of` the PDU's destination; refused when it cannot be a short code."""
    short_code = short_code_of(pdu.destination_addr, bind)
    if len(short_code) > MAX_SHORT_CODE:
        raise UnusableMO(
            f"destination of {len(short_code)} characters is no short code", CommandStatus.ESME_RINVDSTADR
        )
    return short_code


def dedup_key(
    carrier: str,
    msisdn: str,
    short_code: str,
    data_coding: int,
    payload: bytes,
    reference: int | None = None,
    *part: int,
) -> str:
    """A stable digest of what identifies one MO (or, with ``part`` = (number of parts, part number),
    one part of a long MO) as the SMSC sent it, not when it arrived.

    A redelivery carries the same; so does the same subscriber texting the same words twice, which is
    a second MO: the store matches an MO only with one whose answer may not have reached the SMSC.
    The subscriber enters the digest in E.164 form ('+' and digits), as in the keys stored before the
    daemon held numbers as bare digits: a redelivery across that upgrade is still recognised.
    """
    fields = (
        carrier,
        _KEYED_NUMBER + msisdn,
        short_code,
        str(data_coding),
        "" if reference is None else str(reference),
        *(str(number) for number in part),
    )
    # each field followed by a unit separator, then the octets: one buffer, hashed in one call
    head = "".join(f"{field}\x1f" for field in fields).encode()
    return hashlib.blake2b(head + payload, digest_size=16).hexdigest()


def part_set_key(carrier: str, msisdn: str, short_code: str, reference: int, total: int) -> str:
    """The message a part belongs to, whichever bind it came through (the number keyed as in
    :func:`dedup_key`, so that parts stored before an upgrade still join their message)."""
    fields = (carrier, _KEYED_NUMBER + msisdn, short_code, str(reference), str(total))
    head = "".join(f"{field}\x1f" for field in fields)
    return hashlib.blake2b(head.encode(), digest_size=16).hexdigest()


def stored_text(payload: bytes, data_coding: int) -> tuple[str, bytes | None]:
    """The text the store keeps for an MO's octets, and the octets themselves when that text does not
    say everything they do.

    The one rule for every database: control characters (NUL first: PostgreSQL refuses it) and
    surrogates become U+FFFD, as octets the coding cannot decode already do; then the octets are kept
    beside the text, as they are for codings that are not text at all (8-bit data, unknown codings).
    """
    text = decode_text(payload, data_coding)
    if _UNSTORABLE.search(text) is not None:
        text = _UNSTORABLE.sub(REPLACEMENT_CHAR, text)
    elif REPLACEMENT_CHAR not in text and alphabet_for(data_coding) not in _NOT_TEXT:
        return text, None
    return text, payload


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
) -> InboundMO:
    """Normalise one whole MO; :class:`UnusableMO` when its addresses cannot be used."""
    return inbound_mo(
        bind.carrier,
        bind.bind,
        bind.country,
        subscriber_number(pdu, bind),
        destination_short_code(pdu, bind),
        payload,
        data_coding,
        keywords,
        received_at,
    )


def build_part(
    bind: BindInfo, pdu: DeliverSM | DataSM, info: ConcatInfo, payload: bytes, received_at: datetime
) -> InboundPart:
    """Normalise one part of a long MO; :class:`UnusableMO` when its addresses cannot be used."""
    msisdn = subscriber_number(pdu, bind)
    short_code = destination_short_code(pdu, bind)
    data_coding = pdu.data_coding
    return InboundPart(
        carrier=bind.carrier,
        bind=bind.bind,
        country=bind.country,
        msisdn=msisdn,
        short_code=short_code,
        reference=info.reference,
        total=info.total,
        part_number=info.part_number,
        data_coding=data_coding,
        payload=payload,
        received_at=received_at,
        dedup_key=dedup_key(
            bind.carrier,
            msisdn,
            short_code,
            data_coding,
            payload,
            info.reference,
            info.total,
            info.part_number,
        ),
        set_key=part_set_key(bind.carrier, msisdn, short_code, info.reference, info.total),
    )


def inbound_mo(
    carrier: str,
    bind: str,
    country: str,
    msisdn: str,
    short_code: str,
    payload: bytes,
    data_coding: int,
    keywords: KeywordSet,
    received_at: datetime,
    *,
    reference: int | None = None,
    parts_total: int = 1,
    parts_received: int = 1,
) -> InboundMO:
    """One MO from its normalised addresses and its octets (whole, or the joined parts of a long one)."""
    text, raw = stored_text(payload, data_coding)
    incomplete = parts_received < parts_total
    # the first word is read once, for routing and for the reserved keywords; a keyword in a
    # fragment is not a command: only whole messages count
    first_word = _normalised_first_word(text)
    reserved = not incomplete and keywords.kind_of(first_word) is not None
    keyword = keywords.detect(text) if reserved else None
    return InboundMO(
        carrier=carrier,
        bind=bind,
        country=country,
        msisdn=msisdn,
        short_code=short_code,
        text=text,
        data_coding=data_coding,
        received_at=received_at,
        dedup_key=dedup_key(carrier, msisdn, short_code, data_coding, payload, reference),
        parts_total=parts_total,
        parts_received=parts_received,
        incomplete=incomplete,
        keyword=keyword,
        service_keyword=first_word or None,
        raw=raw,
    )


def keyword_set(opt_out: tuple[str, ...], opt_in: tuple[str, ...], help_words: tuple[str, ...]) -> KeywordSet:
    """The configured reserved keywords of a country as routing's matcher."""
    return KeywordSet.of(opt_out=opt_out, opt_in=opt_in, help=help_words)
