"""Text of ``short_message``: GSM 03.38, Latin-1, UCS-2, 8-bit data, and the draft counter.

SMPP carries GSM 03.38 text with data_coding 0 *unpacked*: one septet per octet, extension
characters as the escape 0x1B followed by their code. ``pack_septets`` / ``unpack_septets`` give the
packed form the air interface uses (with the fill bits that follow a UDH).

Decoding is tolerant (an MO is never lost because of its text); encoding is strict unless asked to
replace what a coding cannot carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Literal

from smpp.errors import LocalProtocolError

# --- GSM 03.38 ----------------------------------------------------------------------------------------

GSM_ESCAPE = 0x1B

#: The default alphabet, index = septet. 0x1B is the escape to the extension table, not a character.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: The extension table: these characters cost two septets (escape + code).
_GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

GSM_BASIC_CHARS = frozenset(c for i, c in enumerate(_GSM_BASIC) if i != GSM_ESCAPE)
GSM_EXTENSION_CHARS = frozenset(_GSM_EXTENSION.values())
GSM_CHARS = GSM_BASIC_CHARS | GSM_EXTENSION_CHARS

# str.translate tables: char -> unpacked septet string, and septet -> char.
_GSM_ENCODE_TABLE: dict[int, str] = {
    **{ord(c): chr(i) for i, c in enumerate(_GSM_BASIC) if i != GSM_ESCAPE},
    **{ord(c): "\x1b" + chr(code) for code, c in _GSM_EXTENSION.items()},
}
_GSM_DECODE_TABLE: dict[int, str] = {
    **{i: c for i, c in enumerate(_GSM_BASIC) if i != GSM_ESCAPE},
    **{i: "\ufffd" for i in range(0x80, 0x100)},
}
REPLACEMENT_CHAR = "\ufffd"
#: Latin-1 octet -> GSM 03.38 septet for the basic-table characters that Latin-1 has; 0x80 (not a
#: septet) for every other octet: extension characters and characters GSM-7 does not have.
_LATIN1_TO_SEPTET = bytes(
    _GSM_BASIC.index(chr(octet)) if chr(octet) in GSM_BASIC_CHARS else 0x80 for octet in range(0x100)
)


def _basic_septets(text: str) -> bytes | None:
    """Unpacked septets of ``text`` when all of it is in the GSM basic table and in Latin-1, as nearly
    every Latin-script message is: two C-level passes instead of a set and a per-character translate.
    None otherwise (the full encoder decides)."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return None
    septets = raw.translate(_LATIN1_TO_SEPTET)
    return septets if septets.isascii() else None


def _gsm_encode(text: str, errors: Literal["strict", "replace"]) -> bytes:
    septets = _basic_septets(text)
    if septets is not None:
        return septets
    unencodable = set(text) - GSM_CHARS
    if unencodable:
        if errors == "strict":
            raise UnencodableTextError("GSM-7", _in_order(text, unencodable))
        text = "".join("?" if c in unencodable else c for c in text)
    return text.translate(_GSM_ENCODE_TABLE).encode("latin-1")


def _gsm_decode(data: bytes) -> str:
    if GSM_ESCAPE not in data:
        return data.decode("latin-1").translate(_GSM_DECODE_TABLE)
    out: list[str] = []
    i, end = 0, len(data)
    while i < end:
        octet = data[i]
        if octet != GSM_ESCAPE:
            out.append(_GSM_DECODE_TABLE.get(octet, chr(octet)))
            i += 1
            continue
        following = data[i + 1] if i + 1 < end else None
        if following is None or following == GSM_ESCAPE:
            # 03.38: an escape the receiver cannot interpret is shown as a space.
            out.append(" ")
            i += 1
        else:
            # 03.38: an unknown extension code falls back to the basic table.
            out.append(_GSM_EXTENSION.get(following) or _GSM_DECODE_TABLE.get(following, chr(following)))
            i += 2
    return "".join(out)


def gsm_septet_count(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (extension characters count twice); chars outside it count once."""
    return len(text) + sum(text.count(c) for c in GSM_EXTENSION_CHARS if c in text)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack unpacked septets (one per octet) into 7-bit GSM, LSB first, after ``fill_bits`` zero bits.

    ``fill_bits`` (0-6) aligns the first septet after a UDH. When the last octet would end with seven
    spare bits, they hold a CR (3GPP 23.038 §6.1.2.3.1) so the receiver does not read an extra '@'.
    """
    if not 0 <= fill_bits <= 6:
        raise LocalProtocolError(f"fill_bits must be 0-6, not {fill_bits}")
    if any(s > 0x7F for s in septets):
        raise LocalProtocolError("a septet must be 0x00-0x7F")
    total_bits = fill_bits + 7 * len(septets)
    if (-total_bits) % 8 == 7:
        septets += b"\r"
        total_bits += 7
    acc = 0
    for index, septet in enumerate(septets):
        acc |= septet << (fill_bits + 7 * index)
    return acc.to_bytes((total_bits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Unpack 7-bit GSM into one septet per octet, skipping ``fill_bits`` leading bits.

    Without ``count``, every whole septet is returned, except a CR that ends exactly on an octet
    boundary: that is the padding ``pack_septets`` adds (a real trailing CR there needs ``count``).
    """
    if not 0 <= fill_bits <= 6:
        raise LocalProtocolError(f"fill_bits must be 0-6, not {fill_bits}")
    bits = max(0, 8 * len(data) - fill_bits)
    wanted = bits // 7 if count is None else min(count, bits // 7)
    acc = int.from_bytes(data, "little") >> fill_bits
    septets = bytes((acc >> (7 * i)) & 0x7F for i in range(wanted))
    if count is None and bits % 7 == 0 and septets.endswith(b"\r"):
        septets = septets[:-1]  # the CR that filled seven spare bits
    return septets


# --- alphabets ----------------------------------------------------------------------------------------


class Alphabet(Enum):
    """What the octets of a short_message mean; the value is the name shown to people."""

    GSM7 = "GSM-7"
    IA5 = "IA5"
    LATIN1 = "Latin-1"
    UCS2 = "UCS-2"
    OCTETS = "8-bit"
    CYRILLIC = "Cyrillic"
    HEBREW = "Hebrew"
    ISO2022JP = "ISO-2022-JP"
    KSC5601 = "KS C 5601"


#: Python codec of each byte-oriented alphabet (GSM-7 has its own tables).
_CODECS = {
    Alphabet.IA5: "ascii",
    Alphabet.LATIN1: "latin-1",
    Alphabet.UCS2: "utf-16-be",
    Alphabet.OCTETS: "latin-1",
    Alphabet.CYRILLIC: "iso8859-5",
    Alphabet.HEBREW: "iso8859-8",
    Alphabet.ISO2022JP: "iso2022_jp",
    Alphabet.KSC5601: "euc_kr",
}
#: Alphabets where one character may take several octets: split them by characters, never by octets.
MULTIBYTE_ALPHABETS = frozenset({Alphabet.ISO2022JP, Alphabet.KSC5601})

_SMPP_ALPHABETS = {
    0x00: Alphabet.GSM7,
    0x01: Alphabet.IA5,
    0x02: Alphabet.OCTETS,
    0x03: Alphabet.LATIN1,
    0x04: Alphabet.OCTETS,
    0x06: Alphabet.CYRILLIC,
    0x07: Alphabet.HEBREW,
    0x08: Alphabet.UCS2,
    0x0A: Alphabet.ISO2022JP,
    0x0E: Alphabet.KSC5601,
}
_DCS_ALPHABET_BITS = {0b00: Alphabet.GSM7, 0b01: Alphabet.OCTETS, 0b10: Alphabet.UCS2}


def alphabet_for(data_coding: int) -> Alphabet | None:
    """The alphabet a data_coding value selects, or ``None`` when we do not know it.

    0x00-0x0F follow SMPP 3.4 §5.2.19; higher values follow the GSM 03.38 coding groups
    (general data coding with a message class, message waiting, and 0xF0-0xFF message class).
    """
    if data_coding in _SMPP_ALPHABETS:
        return _SMPP_ALPHABETS[data_coding]
    if 0x10 <= data_coding <= 0x7F:  # general data coding (bit 6: marked for automatic deletion)
        if data_coding & 0x20:  # compressed: we have no decompressor
            return None
        return _DCS_ALPHABET_BITS.get((data_coding >> 2) & 0b11)
    if 0xC0 <= data_coding <= 0xDF:  # message waiting indication, GSM-7
        return Alphabet.GSM7
    if 0xE0 <= data_coding <= 0xEF:  # message waiting indication, UCS-2
        return Alphabet.UCS2
    if 0xF0 <= data_coding <= 0xFF:  # data coding / message class: bit 2 = 8-bit data
        return Alphabet.OCTETS if data_coding & 0x04 else Alphabet.GSM7
    return None


class UnencodableTextError(LocalProtocolError):
    """The text holds characters the requested data_coding cannot carry."""

    def __init__(self, encoding: str, chars: tuple[str, ...]) -> None:
        shown = ", ".join(repr(c) for c in chars[:10])
        super().__init__(f"{encoding} cannot carry {shown}")
        self.encoding = encoding
        self.chars = chars


def _in_order(text: str, chars: set[str]) -> tuple[str, ...]:
    """The distinct ``chars`` in the order they first appear in ``text``."""
    if len(chars) <= 8:
        return tuple(sorted(chars, key=text.index))
    return tuple(dict.fromkeys(c for c in text if c in chars))


def encode_text(text: str, data_coding: int, *, errors: Literal["strict", "replace"] = "strict") -> bytes:
    """``text`` as short_message octets for ``data_coding``.

    GSM-7 comes out unpacked (one septet per octet), UCS-2 as UTF-16-BE (characters beyond the BMP
    as surrogate pairs), 8-bit data as Latin-1 (the inverse of ``decode_text``). A character the coding
    cannot carry raises ``UnencodableTextError``, or becomes ``?`` with ``errors="replace"``. An unknown
    data_coding raises ``LocalProtocolError``.
    """
    alphabet = alphabet_for(data_coding)
    if alphabet is None:
        raise LocalProtocolError(f"cannot encode text for data_coding 0x{data_coding:02X}")
    return _encode(text, alphabet, errors)


def _encode(text: str, alphabet: Alphabet, errors: Literal["strict", "replace"]) -> bytes:
    if alphabet is Alphabet.GSM7:
        return _gsm_encode(text, errors)
    if alphabet is Alphabet.UCS2:
        return text.encode("utf-16-be", "surrogatepass")
    try:
        return text.encode(_CODECS[alphabet], "strict")
    except UnicodeEncodeError:
        if errors == "strict":
            bad = {c for c in set(text) if not _can_encode(c, alphabet)}
            raise UnencodableTextError(alphabet.value, _in_order(text, bad)) from None
        return "".join(c if _can_encode(c, alphabet) else "?" for c in text).encode(_CODECS[alphabet])


def _can_encode(char: str, alphabet: Alphabet) -> bool:
    try:
        char.encode(_CODECS[alphabet])
    except UnicodeEncodeError:
        return False
    return True


def decode_text(data: bytes, data_coding: int) -> str:
    """The text of short_message octets. Never raises: carrier garbage becomes U+FFFD.

    Odd-length UCS-2 and lone surrogates give a replacement character, an unknown GSM code a
    replacement character, and an unknown data_coding is read as Latin-1 (every octet survives).
    """
    alphabet = alphabet_for(data_coding) or Alphabet.LATIN1
    if alphabet is Alphabet.GSM7:
        return _gsm_decode(data)
    return data.decode(_CODECS[alphabet], "replace")


def choose_encoding(text: str, *, allow_latin1: bool = False) -> int:
    """The cheapest data_coding for ``text``: GSM-7 (0), else Latin-1 (3) when allowed, else UCS-2 (8)."""
    if _basic_septets(text) is not None:
        return 0x00
    chars = set(text)
    if chars <= GSM_CHARS:
        return 0x00
    if allow_latin1 and all(ord(c) <= 0xFF for c in chars):
        return 0x03
    return 0x08


# --- segment sizes ------------------------------------------------------------------------------------


class ConcatMode(StrEnum):
    """How a long message travels: a concatenation UDH (8- or 16-bit reference), SAR TLVs, or one
    PDU with the whole text in message_payload (the SMSC splits it)."""

    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


#: Octets of the concatenation UDH (UDHL + IEI + IEDL + data) each part carries on the air.
_UDH_OCTETS = {
    ConcatMode.UDH8: 6,
    ConcatMode.UDH16: 7,
    ConcatMode.PAYLOAD: 6,
    # SAR parts travel without UDH in SMPP, but the SMSC must add a concatenation IE on the
    # air; sar_msg_ref_num is 16-bit, so leave room for the 7-octet form.
    ConcatMode.SAR: 7,
}
MAX_USER_DATA_OCTETS = 140
#: Septets of one GSM-7 SMS (no UDH).
_SINGLE_GSM7_SEPTETS = MAX_USER_DATA_OCTETS * 8 // 7
#: message_payload limit: the TLV length is 16-bit, and the whole PDU must stay under MAX_PDU_SIZE.
MAX_PAYLOAD_OCTETS = 64_000
#: Concatenation IEs and SAR TLVs count parts in one octet.
MAX_PARTS = 255


def unit_size(alphabet: Alphabet) -> int:
    """Octets per counted unit in unpacked short_message: UCS-2 counts UTF-16 units, the rest octets."""
    return 2 if alphabet is Alphabet.UCS2 else 1


def segment_capacity(alphabet: Alphabet, mode: ConcatMode | str, *, multipart: bool) -> int:
    """Units one air segment holds: septets (GSM-7), UTF-16 units (UCS-2) or octets (others).

    Single: 160 / 70 / 140. Multipart with UDH8: 153 / 67 / 134, UDH16 and SAR: 152 / 66 / 133.
    """
    if multipart:
        octets = MAX_USER_DATA_OCTETS - _UDH_OCTETS[mode if type(mode) is ConcatMode else ConcatMode(mode)]
    else:
        octets = MAX_USER_DATA_OCTETS
    if alphabet is Alphabet.GSM7:
        return octets * 8 // 7
    return octets // unit_size(alphabet)


def cut_points(data: bytes, alphabet: Alphabet, capacity: int) -> list[int]:
    """Octet offsets where unpacked ``data`` splits into parts of at most ``capacity`` units.

    Never splits a GSM escape pair or a UTF-16 surrogate pair. Returns the end offset of each part.
    """
    step = capacity * unit_size(alphabet)
    ends: list[int] = []
    start, total = 0, len(data)
    while True:
        end = start + step
        if end >= total:
            ends.append(total)
            return ends
        if alphabet is Alphabet.GSM7 and data[end - 1] == GSM_ESCAPE:
            end -= 1
        elif alphabet is Alphabet.UCS2 and 0xD8 <= data[end - 2] <= 0xDB:
            end -= 2
        ends.append(end)
        start = end


def split_text_by_chars(text: str, alphabet: Alphabet, capacity: int) -> list[bytes]:
    """Encode ``text`` in parts of at most ``capacity`` octets, each encoded on its own (for multibyte
    and stateful codings, where a part must be a whole, self-contained encoding)."""
    parts: list[bytes] = []
    start = 0
    while start < len(text) or not parts:
        low, high = start + 1, len(text)  # find the longest text[start:end] that fits
        best = min(start + 1, len(text))
        while low <= high:
            middle = (low + high) // 2
            if len(_encode(text[start:middle], alphabet, "replace")) <= capacity:
                best, low = middle, middle + 1
            else:
                high = middle - 1
        parts.append(_encode(text[start:best], alphabet, "replace"))
        start = best
    return parts


# --- the draft counter ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftInfo:
    """What a draft costs, for the panel's counter."""

    data_coding: int
    #: "GSM-7", "UCS-2", "Latin-1", ... (``Alphabet`` value).
    encoding: str
    #: Septets (GSM-7), UTF-16 units (UCS-2) or octets (other codings) the text takes.
    units: int
    #: SMS on the air, what the carrier bills.
    segments: int
    #: submit PDUs we send: ``segments``, except 1 in message_payload mode (the SMSC splits).
    pdus: int
    #: Units still free in the last segment.
    units_left: int
    #: Units per segment at this length (single-SMS size while it fits one, multipart size after).
    segment_capacity: int
    #: Distinct characters outside GSM-7, in order of appearance: why the text is not GSM-7.
    non_gsm_chars: tuple[str, ...]
    #: Characters the data_coding cannot carry (counted as ``?``); empty when chosen automatically.
    unencodable_chars: tuple[str, ...]
    max_segments: int | None = None

    @property
    def fits(self) -> bool:
        """False when the text needs more segments than allowed."""
        return self.max_segments is None or self.segments <= self.max_segments


def draft_info(
    text: str,
    *,
    data_coding: int | None = None,
    max_segments: int | None = None,
    concat: ConcatMode | str = ConcatMode.UDH8,
    allow_latin1: bool = False,
) -> DraftInfo:
    """Count ``text`` as it would be sent. Runs on every keystroke: one encode and a few slices.

    Without ``data_coding`` the cheapest coding is chosen (see ``choose_encoding``).
    """
    mode = ConcatMode(concat)
    if data_coding is None:
        # Most MTs (the outbox checks each one): one SMS of GSM basic-table characters, whatever the
        # concatenation mode, counted from the one encode the choice of coding makes anyway.
        septets = _basic_septets(text)
        if septets is not None and 0 < len(septets) <= _SINGLE_GSM7_SEPTETS:
            return DraftInfo(
                data_coding=0x00,
                encoding=Alphabet.GSM7.value,
                units=len(septets),
                segments=1,
                pdus=1,
                units_left=_SINGLE_GSM7_SEPTETS - len(septets),
                segment_capacity=_SINGLE_GSM7_SEPTETS,
                non_gsm_chars=(),
                unencodable_chars=(),
                max_segments=max_segments,
            )
    return _draft_info(text, data_coding, max_segments, mode, allow_latin1)


def _draft_info(
    text: str, data_coding: int | None, max_segments: int | None, mode: ConcatMode, allow_latin1: bool
) -> DraftInfo:
    """:func:`draft_info` the general way, every coding and length."""
    if data_coding is None:
        data_coding = choose_encoding(text, allow_latin1=allow_latin1)
    alphabet = alphabet_for(data_coding)
    if alphabet is None:
        raise LocalProtocolError(f"cannot encode text for data_coding 0x{data_coding:02X}")
    non_gsm = set(text) - GSM_CHARS
    unencodable: tuple[str, ...] = ()
    if alphabet is Alphabet.GSM7:
        unencodable = _in_order(text, non_gsm)
    elif alphabet is not Alphabet.UCS2:
        unencodable = _in_order(text, {c for c in set(text) if not _can_encode(c, alphabet)})
    lengths = part_lengths(text, alphabet, mode)
    multipart = len(lengths) > 1
    capacity = segment_capacity(alphabet, mode, multipart=multipart)
    units = sum(lengths)
    if mode is ConcatMode.PAYLOAD and multipart:
        pdus = 1
    else:
        pdus = len(lengths)
    return DraftInfo(
        data_coding=data_coding,
        encoding=alphabet.value,
        units=units,
        segments=len(lengths),
        pdus=pdus,
        units_left=capacity - lengths[-1],
        segment_capacity=capacity,
        non_gsm_chars=_in_order(text, non_gsm),
        unencodable_chars=unencodable,
        max_segments=max_segments,
    )


def part_lengths(text: str, alphabet: Alphabet, mode: ConcatMode) -> list[int]:
    """Units in each air segment of ``text`` (one entry when it fits a single SMS)."""
    data = _encode(text, alphabet, "replace")
    size = unit_size(alphabet)
    if len(data) <= segment_capacity(alphabet, mode, multipart=False) * size:
        return [len(data) // size]
    capacity = segment_capacity(alphabet, mode, multipart=True)
    if alphabet in MULTIBYTE_ALPHABETS:
        return [len(part) for part in split_text_by_chars(text, alphabet, capacity)]
    ends = cut_points(data, alphabet, capacity)
    return [(end - start) // size for start, end in zip([0, *ends[:-1]], ends, strict=True)]
