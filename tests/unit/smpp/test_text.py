"""smpp.text: GSM 03.38, the other codings, tolerant decoding, the cheapest coding and the draft counter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp.errors import LocalProtocolError
from smpp.text import (
    GSM_CHARS,
    GSM_EXTENSION_CHARS,
    Alphabet,
    ConcatMode,
    UnencodableTextError,
    alphabet_for,
    choose_encoding,
    cut_points,
    decode_text,
    draft_info,
    encode_text,
    gsm_septet_count,
    pack_septets,
    segment_capacity,
    split_text_by_chars,
    unpack_septets,
)

GSM_TEXT = st.text(alphabet=sorted(GSM_CHARS), max_size=600)

# --- GSM 03.38 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "octets"),
    [
        ("@", b"\x00"),
        ("£", b"\x01"),
        ("$", b"\x02"),
        ("è", b"\x04"),
        ("\n", b"\x0a"),
        ("Δ", b"\x10"),
        ("_", b"\x11"),
        ("Æ", b"\x1c"),
        ("É", b"\x1f"),
        (" ", b"\x20"),
        ("¤", b"\x24"),
        ("¡", b"\x40"),
        ("A", b"\x41"),
        ("Ñ", b"\x5d"),
        ("§", b"\x5f"),
        ("¿", b"\x60"),
        ("ñ", b"\x7d"),
        ("à", b"\x7f"),
        ("€", b"\x1b\x65"),
        ("^", b"\x1b\x14"),
        ("{", b"\x1b\x28"),
        ("}", b"\x1b\x29"),
        ("\\", b"\x1b\x2f"),
        ("[", b"\x1b\x3c"),
        ("~", b"\x1b\x3d"),
        ("]", b"\x1b\x3e"),
        ("|", b"\x1b\x40"),
        ("\f", b"\x1b\x0a"),
    ],
)
def test_gsm_code_points(char: str, octets: bytes) -> None:
    assert encode_text(char, 0) == octets
    assert decode_text(octets, 0) == char


def test_every_gsm_character_round_trips() -> None:
    text = "".join(sorted(GSM_CHARS))
    assert len(GSM_CHARS) == 127 + 10
    assert decode_text(encode_text(text, 0), 0) == text


def test_extension_characters_cost_two_septets() -> None:
    assert gsm_septet_count("a€[b") == 6
    assert gsm_septet_count("plain") == 5
    assert len(encode_text("".join(sorted(GSM_EXTENSION_CHARS)), 0)) == 20


def test_gsm_strict_encoding_names_the_characters_in_order() -> None:
    with pytest.raises(UnencodableTextError) as caught:
        encode_text("caña ç 😀 ç `", 0)
    assert caught.value.chars == ("ç", "😀", "`")
    assert caught.value.encoding == "GSM-7"
    assert isinstance(caught.value, LocalProtocolError)


def test_gsm_replace_encoding_uses_question_marks() -> None:
    assert encode_text("a😀b", 0, errors="replace") == b"a?b"


def test_gsm_decoding_of_odd_escapes() -> None:
    # An escape followed by a code outside the extension table shows the basic character (03.38).
    assert decode_text(b"\x1b\x41", 0) == "A"
    # A trailing escape, and an escape before another escape, show a space.
    assert decode_text(b"ab\x1b", 0) == "ab "
    assert decode_text(b"\x1b\x1b\x65", 0) == " €"
    # Octets above 0x7F are not GSM: a replacement character each, with or without escapes around.
    assert decode_text(b"a\x80b", 0) == "a\ufffdb"
    assert decode_text(b"\x1b\x65\xff", 0) == "€\ufffd"
    assert decode_text(b"\x1b\xff", 0) == "\ufffd"


@pytest.mark.parametrize("data_coding", [0xF0, 0xF1, 0xF3, 0xC0, 0xD8, 0x10, 0x11])
def test_codings_that_mean_gsm(data_coding: int) -> None:
    assert decode_text(b"\x1b\x65\x00", data_coding) == "€@"
    assert encode_text("€@", data_coding) == b"\x1b\x65\x00"


# --- packed septets ---------------------------------------------------------------------------------------


def test_pack_known_vector() -> None:
    assert pack_septets(encode_text("hellohello", 0)).hex() == "e8329bfd4697d9ec37"
    assert unpack_septets(bytes.fromhex("e8329bfd4697d9ec37")) == encode_text("hellohello", 0)


def test_pack_pads_seven_spare_bits_with_cr() -> None:
    packed = pack_septets(b"1234567")
    assert len(packed) == 7
    assert unpack_septets(packed, count=8)[-1:] == b"\r"
    assert unpack_septets(packed) == b"1234567"


def test_pack_with_fill_bits_after_a_udh() -> None:
    # After a 6-octet UDH, one fill bit aligns the first septet.
    packed = pack_septets(b"\x7f", fill_bits=1)
    assert packed == bytes([0xFE])
    assert unpack_septets(packed, fill_bits=1) == b"\x7f"


def test_unpack_with_count_beyond_the_data_stops_at_the_data() -> None:
    assert unpack_septets(pack_septets(b"ab"), count=50) == b"ab"
    assert unpack_septets(b"") == b""


@pytest.mark.parametrize("fill_bits", [-1, 7])
def test_fill_bits_are_checked(fill_bits: int) -> None:
    with pytest.raises(LocalProtocolError):
        pack_septets(b"a", fill_bits=fill_bits)
    with pytest.raises(LocalProtocolError):
        unpack_septets(b"a", fill_bits=fill_bits)


def test_pack_refuses_octets_that_are_not_septets() -> None:
    with pytest.raises(LocalProtocolError):
        pack_septets(b"\x80")


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_unpack_round_trip(septets: bytes, fill_bits: int) -> None:
    packed = pack_septets(septets, fill_bits)
    assert len(packed) == (fill_bits + 7 * len(septets) + 7) // 8
    assert unpack_septets(packed, count=len(septets), fill_bits=fill_bits) == septets
    if not septets.endswith(b"\r"):
        assert unpack_septets(packed, fill_bits=fill_bits) == septets


# --- other codings ----------------------------------------------------------------------------------------


def test_ucs2_is_utf16_big_endian_with_surrogate_pairs() -> None:
    assert encode_text("ñ😀", 8) == bytes.fromhex("00f1d83dde00")
    assert decode_text(bytes.fromhex("00f1d83dde00"), 8) == "ñ😀"


def test_latin1_ia5_binary_and_national_codings() -> None:
    assert encode_text("çà", 3) == b"\xe7\xe0"
    assert decode_text(b"\xe7\xe0", 3) == "çà"
    assert encode_text("AT+1", 1) == b"AT+1"
    assert decode_text(b"A\xffB", 1) == "A\ufffdB"
    assert decode_text(b"\x00\xff", 4) == "\x00\xff"
    assert encode_text("\x00\xff", 4) == b"\x00\xff"
    assert decode_text(b"\x00\xff", 0xF4) == "\x00\xff"
    assert decode_text("Привет".encode("iso8859-5"), 6) == "Привет"
    assert encode_text("שלום", 7) == "שלום".encode("iso8859-8")
    assert decode_text(encode_text("日本語", 0x0A), 0x0A) == "日本語"
    assert decode_text(encode_text("한국어", 0x0E), 0x0E) == "한국어"


def test_strict_encoding_of_byte_codings_names_what_does_not_fit() -> None:
    with pytest.raises(UnencodableTextError) as caught:
        encode_text("añ€😀€", 3)
    assert caught.value.chars == ("€", "😀")
    assert caught.value.encoding == "Latin-1"
    assert encode_text("añ€", 3, errors="replace") == b"a\xf1?"


def test_encoding_for_an_unknown_coding_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        encode_text("hi", 0x05)


@pytest.mark.parametrize(
    ("data_coding", "alphabet"),
    [
        (0x00, Alphabet.GSM7),
        (0x01, Alphabet.IA5),
        (0x02, Alphabet.OCTETS),
        (0x03, Alphabet.LATIN1),
        (0x04, Alphabet.OCTETS),
        (0x05, None),
        (0x08, Alphabet.UCS2),
        (0x09, None),
        (0x0F, None),
        (0x10, Alphabet.GSM7),
        (0x14, Alphabet.OCTETS),
        (0x18, Alphabet.UCS2),
        (0x1C, None),
        (0x30, None),
        (0x58, Alphabet.UCS2),
        (0x80, None),
        (0xBF, None),
        (0xC0, Alphabet.GSM7),
        (0xDF, Alphabet.GSM7),
        (0xE0, Alphabet.UCS2),
        (0xF0, Alphabet.GSM7),
        (0xF3, Alphabet.GSM7),
        (0xF4, Alphabet.OCTETS),
        (0xF7, Alphabet.OCTETS),
        (0xFB, Alphabet.GSM7),
        (0xFF, Alphabet.OCTETS),
    ],
)
def test_alphabet_for(data_coding: int, alphabet: Alphabet | None) -> None:
    assert alphabet_for(data_coding) is alphabet


def test_decoding_is_tolerant_of_carrier_garbage() -> None:
    assert decode_text(b"\x00A\x00", 8) == "A\ufffd"  # odd-length UCS-2
    assert decode_text(bytes.fromhex("d83d0041"), 8) == "\ufffdA"  # lone high surrogate
    assert decode_text(b"caf\xe9", 0x05) == "café"  # unknown coding: Latin-1
    assert decode_text(b"\xe9", 0x80) == "é"


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 255))
def test_decode_text_never_raises(data: bytes, data_coding: int) -> None:
    assert isinstance(decode_text(data, data_coding), str)


@given(GSM_TEXT)
def test_gsm_text_round_trips(text: str) -> None:
    assert decode_text(encode_text(text, 0), 0) == text


@given(st.text(max_size=300))
def test_ucs2_text_round_trips(text: str) -> None:
    assert decode_text(encode_text(text, 8), 8) == text


# --- cheapest coding --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "allow_latin1", "expected"),
    [
        ("", False, 0),
        ("Hola, ¿qué tal? Ñandú €5 [ok]", True, 8),
        ("Hola, ¿que tal? Ñandu €5 [ok]", False, 0),
        ("façade", False, 8),
        ("façade", True, 3),
        ("😀", True, 8),
        ("ü", False, 0),
        ("`", True, 3),
    ],
)
def test_choose_encoding(text: str, allow_latin1: bool, expected: int) -> None:
    assert choose_encoding(text, allow_latin1=allow_latin1) == expected


# --- the draft counter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "segments", "capacity", "left"),
    [
        ("", "udh8", 1, 160, 160),
        ("a" * 160, "udh8", 1, 160, 0),
        ("a" * 161, "udh8", 2, 153, 145),
        ("a" * 306, "udh8", 2, 153, 0),
        ("a" * 307, "udh8", 3, 153, 152),
        ("a" * 161, "udh16", 2, 152, 143),
        ("a" * 161, "sar", 2, 152, 143),
        ("a" * 158 + "€", "udh8", 1, 160, 0),
        ("a" * 159 + "€", "udh8", 2, 153, 145),
        ("ñ" * 70 + "😀", "udh8", 2, 67, 62),
        ("😀" * 35, "udh8", 1, 70, 0),
        ("😀" * 36, "udh16", 2, 66, 60),
    ],
)
def test_draft_counts(text: str, mode: str, segments: int, capacity: int, left: int) -> None:
    info = draft_info(text, concat=mode)
    assert (info.segments, info.pdus) == (segments, segments)
    assert (info.segment_capacity, info.units_left) == (capacity, left)


def test_escape_pair_at_a_boundary_moves_to_the_next_segment() -> None:
    info = draft_info("a" * 152 + "€" + "a" * 10)
    # 164 septets; the € cannot straddle parts, so part 1 holds 152 and part 2 holds 12.
    assert (info.units, info.segments, info.units_left) == (164, 2, 141)


def test_surrogate_pair_at_a_boundary_moves_to_the_next_segment() -> None:
    info = draft_info("a" * 66 + "😀" + "a" * 10)
    assert (info.units, info.segments, info.units_left) == (78, 2, 55)


def test_draft_tells_which_characters_force_ucs2() -> None:
    info = draft_info("Mañana 😀 a las 10€ ✓ 😀")
    assert info.encoding == "UCS-2"
    assert info.data_coding == 8
    assert info.non_gsm_chars == ("😀", "✓")
    assert info.unencodable_chars == ()
    assert info.units == len("Mañana 😀 a las 10€ ✓ 😀") + 2


def test_draft_lists_many_forcing_characters_in_order() -> None:
    text = "abcdefghij"
    shifted = "".join(chr(0x3041 + i) for i in range(12))
    info = draft_info(text + shifted + shifted)
    assert info.non_gsm_chars == tuple(shifted)


def test_draft_with_latin1_allowed_and_explicit_codings() -> None:
    info = draft_info("façade", allow_latin1=True)
    assert (info.encoding, info.data_coding, info.units) == ("Latin-1", 3, 6)
    forced = draft_info("hi 😀 ✓", data_coding=0)
    assert forced.encoding == "GSM-7"
    assert forced.unencodable_chars == ("😀", "✓")
    assert forced.units == 6
    latin = draft_info("€ ok", data_coding=3)
    assert latin.unencodable_chars == ("€",)
    octets = draft_info("x" * 141, data_coding=4)
    assert (octets.encoding, octets.segments) == ("8-bit", 2)
    assert (octets.segment_capacity, octets.units_left) == (134, 127)


def test_draft_in_payload_mode_sends_one_pdu_but_counts_air_segments() -> None:
    info = draft_info("a" * 400, concat=ConcatMode.PAYLOAD)
    assert (info.segments, info.pdus, info.segment_capacity) == (3, 1, 153)
    assert draft_info("a" * 100, concat="payload").pdus == 1


def test_draft_max_segments() -> None:
    assert draft_info("a" * 306, max_segments=2).fits
    assert not draft_info("a" * 307, max_segments=2).fits
    assert draft_info("a" * 5000).fits


def test_draft_refuses_unknown_coding_and_mode() -> None:
    with pytest.raises(LocalProtocolError):
        draft_info("x", data_coding=0x05)
    with pytest.raises(ValueError):
        draft_info("x", concat="udh32")


def test_draft_of_multibyte_coding_counts_octets_per_self_contained_part() -> None:
    short = draft_info("日本語", data_coding=0x0A)
    assert (short.segments, short.units) == (1, len("日本語".encode("iso2022_jp")))
    long = draft_info("日本語" * 40, data_coding=0x0A)
    parts = split_text_by_chars("日本語" * 40, Alphabet.ISO2022JP, 134)
    assert long.segments == len(parts) == 2
    assert long.units == sum(map(len, parts))


@pytest.mark.parametrize(
    ("alphabet", "mode", "multipart", "expected"),
    [
        (Alphabet.GSM7, "udh8", False, 160),
        (Alphabet.GSM7, "udh8", True, 153),
        (Alphabet.GSM7, "udh16", True, 152),
        (Alphabet.GSM7, "sar", True, 152),
        (Alphabet.GSM7, "payload", True, 153),
        (Alphabet.UCS2, "udh8", False, 70),
        (Alphabet.UCS2, "udh8", True, 67),
        (Alphabet.UCS2, "udh16", True, 66),
        (Alphabet.OCTETS, "udh8", False, 140),
        (Alphabet.OCTETS, "udh8", True, 134),
        (Alphabet.OCTETS, "udh16", True, 133),
        (Alphabet.LATIN1, "sar", True, 133),
        (Alphabet.UCS2, "sar", True, 66),
    ],
)
def test_segment_capacity(alphabet: Alphabet, mode: str, multipart: bool, expected: int) -> None:
    assert segment_capacity(alphabet, mode, multipart=multipart) == expected


def test_cut_points_never_split_pairs() -> None:
    assert cut_points(b"a\x1b\x65b", Alphabet.GSM7, 2) == [1, 3, 4]
    assert cut_points(bytes.fromhex("0041d83dde000042"), Alphabet.UCS2, 2) == [2, 6, 8]
    assert cut_points(b"abcde", Alphabet.OCTETS, 2) == [2, 4, 5]
    assert cut_points(b"", Alphabet.OCTETS, 2) == [0]


def test_split_by_chars_of_empty_text_is_one_empty_part() -> None:
    assert split_text_by_chars("", Alphabet.KSC5601, 10) == [b""]


@settings(deadline=None)
@given(GSM_TEXT, st.sampled_from(list(ConcatMode)))
def test_gsm_units_and_segments_are_consistent(text: str, mode: ConcatMode) -> None:
    info = draft_info(text, concat=mode)
    assert info.units == gsm_septet_count(text)
    single = segment_capacity(Alphabet.GSM7, mode, multipart=False)
    assert (info.segments == 1) == (info.units <= single)
    assert 0 <= info.units_left <= info.segment_capacity
