"""smpp.receipt: the tolerant receipt parser, the formatter, and message id matching."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.constants import CommandStatus, MessageState
from smpp.errors import RemoteProtocolError
from smpp.receipt import (
    FINAL_STATES,
    Receipt,
    ReceiptParseError,
    format_receipt,
    is_acknowledgement,
    is_delivery_report,
    normalise_message_id,
    parse_receipt,
    parse_receipt_date,
    stat_name,
)
from smpp.tlv import Tag, TLVs

NOON = datetime(2024, 3, 5, 12, 0)
NOON_ONE = datetime(2024, 3, 5, 12, 1)


def test_appendix_b_receipt() -> None:
    receipt = parse_receipt(
        "id:0123456789 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 "
        "stat:DELIVRD err:000 Text:Hola, ¿qué tal?"
    )
    assert receipt == Receipt(
        message_id="0123456789",
        state=MessageState.DELIVERED,
        stat="DELIVRD",
        err="000",
        submit_date=NOON,
        done_date=NOON_ONE,
        sub=1,
        dlvrd=1,
        text="Hola, ¿qué tal?",
    )
    assert receipt.is_final


# Real-world variants: (short_message, message_id, state, stat, err, submit_date, done_date, sub, dlvrd, text)
VARIANTS = [
    (
        "id:c449ab9744f47b6af1879e49e75e4f40 sub:001 dlvrd:0 submit date:2403051200 done date:2403051201 "
        "stat:ACCEPTD err:0 text:This is an Acti",
        "c449ab9744f47b6af1879e49e75e4f40",
        MessageState.ACCEPTED,
        "ACCEPTD",
        "0",
        NOON,
        NOON_ONE,
        1,
        0,
        "This is an Acti",
    ),
    (
        "id:1234 submit date:2403051200 done date:2403051201 stat:DELIVRD err:0",
        "1234",
        MessageState.DELIVERED,
        "DELIVRD",
        "0",
        NOON,
        NOON_ONE,
        None,
        None,
        "",
    ),
    (
        "ID:1234 SUB:001 DLVRD:001 SUBMIT DATE:2403051200 DONE DATE:2403051201 "
        "STAT:DELIVRD ERR:000 TEXT:HELLO",
        "1234",
        MessageState.DELIVERED,
        "DELIVRD",
        "000",
        NOON,
        NOON_ONE,
        1,
        1,
        "HELLO",
    ),
    (
        "stat:UNDELIV err:0x0b id:ABCDEF01 done date:2403051201 submit date:2403051200",
        "ABCDEF01",
        MessageState.UNDELIVERABLE,
        "UNDELIV",
        "0x0b",
        NOON,
        NOON_ONE,
        None,
        None,
        "",
    ),
    (
        "id:77 sub:1 dlvrd:0 submit_date:240305120000 done_date:240305120100 stat:EXPIRED err:254",
        "77",
        MessageState.EXPIRED,
        "EXPIRED",
        "254",
        NOON,
        NOON_ONE,
        1,
        0,
        "",
    ),
    (
        "Id:77 Submit-Date:20240305120000 Done-Date:20240305120105 Stat:Delivrd Err:000",
        "77",
        MessageState.DELIVERED,
        "Delivrd",
        "000",
        NOON,
        datetime(2024, 3, 5, 12, 1, 5),
        None,
        None,
        "",
    ),
    (
        "id:9 stat:DELIVRD err:000 Text:Re: meet at 10:30 stat:fake",
        "9",
        MessageState.DELIVERED,
        "DELIVRD",
        "000",
        None,
        None,
        None,
        None,
        "Re: meet at 10:30 stat:fake",
    ),
    (
        "id:9 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 stat:DELIVRD err:000 mcc:214 "
        "mnc:07 text:x",
        "9",
        MessageState.DELIVERED,
        "DELIVRD",
        "000",
        NOON,
        NOON_ONE,
        1,
        1,
        "x",
    ),
    (
        "id: 12345  stat : DELIVERED  err: 000",
        "12345",
        MessageState.DELIVERED,
        "DELIVERED",
        "000",
        None,
        None,
        None,
        None,
        "",
    ),
    (
        "id:5;sub:001;dlvrd:000;stat:REJECTD;err:012",
        "5",
        MessageState.REJECTED,
        "REJECTD",
        "012",
        None,
        None,
        1,
        0,
        "",
    ),
    (
        "id:5 submit date:99999999999 done date:2413051201 stat:ENROUTE err:",
        "5",
        MessageState.ENROUTE,
        "ENROUTE",
        None,
        None,
        None,
        None,
        None,
        "",
    ),
    (
        "id:5 submit date:24-03-05 12:00 done date:2403051201 stat:2",
        "5",
        MessageState.DELIVERED,
        "2",
        None,
        NOON,
        NOON_ONE,
        None,
        None,
        "",
    ),
    (
        "id:5 sub:abc dlvrd:00x stat:WHATEVER err:000",
        "5",
        MessageState.UNKNOWN,
        "WHATEVER",
        "000",
        None,
        None,
        None,
        None,
        "",
    ),
    (
        "id:5 stat:UNDELIVERED err:001",
        "5",
        MessageState.UNDELIVERABLE,
        "UNDELIVERED",
        "001",
        None,
        None,
        None,
        None,
        "",
    ),
    (
        "id:5 status:FAILED error:34",
        "5",
        MessageState.UNDELIVERABLE,
        "FAILED",
        "34",
        None,
        None,
        None,
        None,
        "",
    ),
    ("id:5 stat:DELETED text:", "5", MessageState.DELETED, "DELETED", None, None, None, None, None, ""),
    ("id:5 stat:UNKNOWN", "5", MessageState.UNKNOWN, "UNKNOWN", None, None, None, None, None, ""),
    ("msgid:00AF stat:ACCEPTED", "00AF", MessageState.ACCEPTED, "ACCEPTED", None, None, None, None, None, ""),
]


@pytest.mark.parametrize(
    (
        "short_message",
        "message_id",
        "state",
        "stat",
        "err",
        "submit_date",
        "done_date",
        "sub",
        "dlvrd",
        "text",
    ),
    VARIANTS,
)
def test_real_world_variants(
    short_message: str,
    message_id: str,
    state: MessageState,
    stat: str,
    err: str | None,
    submit_date: datetime | None,
    done_date: datetime | None,
    sub: int | None,
    dlvrd: int | None,
    text: str,
) -> None:
    expected = Receipt(
        message_id=message_id,
        state=state,
        stat=stat,
        err=err,
        submit_date=submit_date,
        done_date=done_date,
        sub=sub,
        dlvrd=dlvrd,
        text=text,
    )
    assert parse_receipt(short_message) == expected
    assert parse_receipt(short_message.encode("latin-1") + b"\x00") == expected


def test_tlvs_win_over_the_text() -> None:
    tlvs = TLVs([(Tag.RECEIPTED_MESSAGE_ID, "1A2B"), (Tag.MESSAGE_STATE, int(MessageState.UNDELIVERABLE))])
    receipt = parse_receipt("id:6699 stat:DELIVRD err:000", tlvs)
    assert receipt.message_id == "1A2B"
    assert (receipt.state, receipt.stat) == (MessageState.UNDELIVERABLE, "DELIVRD")


def test_tlvs_alone_make_a_receipt() -> None:
    tlvs = TLVs([(Tag.RECEIPTED_MESSAGE_ID, "abc\x00"), (Tag.MESSAGE_STATE, 2)])
    receipt = parse_receipt(b"", tlvs)
    assert (receipt.message_id, receipt.state, receipt.stat, receipt.err) == (
        "abc",
        MessageState.DELIVERED,
        "DELIVRD",
        None,
    )


def test_an_unknown_message_state_tlv_is_ignored() -> None:
    receipt = parse_receipt("id:1 stat:EXPIRED", TLVs([(Tag.MESSAGE_STATE, 42)]))
    assert receipt.state is MessageState.EXPIRED


def test_a_message_id_of_64_characters_is_one() -> None:
    assert parse_receipt("id:" + "a" * 64 + " stat:DELIVRD err:000").message_id == "a" * 64


def test_an_overlong_receipted_message_id_tlv_is_refused() -> None:
    with pytest.raises(ReceiptParseError):
        parse_receipt("stat:DELIVRD", TLVs([(Tag.RECEIPTED_MESSAGE_ID, "7" * 65)]))


def test_an_empty_receipted_message_id_tlv_falls_back_to_the_text() -> None:
    assert parse_receipt("id:7 stat:DELIVRD", TLVs([(Tag.RECEIPTED_MESSAGE_ID, "")])).message_id == "7"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "stat:DELIVRD err:000",
        "id: stat:DELIVRD",
        "hello world",
        b"\x00\x00",
        # ids no submit_sm_resp can have given: over 64 characters, or with control characters
        "id:" + "9" * 65 + " stat:DELIVRD err:000",
        "id:12\x0034 stat:DELIVRD err:000",
        "id:12\x1b34 stat:DELIVRD err:000",
    ],
)
def test_no_message_id_is_the_only_failure(text: str | bytes) -> None:
    with pytest.raises(ReceiptParseError) as caught:
        parse_receipt(text)
    assert isinstance(caught.value, RemoteProtocolError)
    assert caught.value.status == CommandStatus.ESME_RX_P_APPN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2403051200", NOON),
        ("240305120030", datetime(2024, 3, 5, 12, 0, 30)),
        ("20240305120030", datetime(2024, 3, 5, 12, 0, 30)),
        ("", None),
        ("24030512", None),
        ("2402301200", None),
        ("garbage", None),
    ],
)
def test_receipt_dates(value: str, expected: datetime | None) -> None:
    assert parse_receipt_date(value) == expected


def test_is_final() -> None:
    finals = {s for s in MessageState if parse_receipt(f"id:1 stat:{stat_name(s)}").is_final}
    assert (
        finals
        == FINAL_STATES
        == {
            MessageState.DELIVERED,
            MessageState.EXPIRED,
            MessageState.DELETED,
            MessageState.UNDELIVERABLE,
            MessageState.REJECTED,
        }
    )


@pytest.mark.parametrize(
    ("esm_class", "report", "acknowledgement"),
    [
        (0x00, False, False),  # a subscriber's message
        (0x40, False, False),  # one with a UDH
        (0x04, True, False),  # SMSC delivery receipt
        (0x44, True, False),
        (0x20, True, False),  # intermediate delivery notification
        (0x08, False, True),  # SME delivery acknowledgement
        (0x10, False, True),  # SME manual / user acknowledgement
        (0x18, False, True),  # conversation abort
        (0x0C, False, False),  # reserved types: left to the MO path, as before
        (0x24, False, False),
    ],
)
def test_message_types(esm_class: int, report: bool, acknowledgement: bool) -> None:
    assert is_delivery_report(esm_class) is report
    assert is_acknowledgement(esm_class) is acknowledgement


# --- format ------------------------------------------------------------------------------------------------


def test_format_receipt() -> None:
    assert format_receipt("0123456789", MessageState.DELIVERED, NOON, NOON_ONE, text="Hola") == (
        "id:0123456789 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 stat:DELIVRD err:000 "
        "Text:Hola"
    )
    assert format_receipt(
        "7",
        MessageState.UNDELIVERABLE,
        NOON,
        datetime(2024, 3, 5, 12, 1, 9),
        err="034",
        twelve_digit_dates=True,
    ) == ("id:7 sub:001 dlvrd:000 submit date:240305120000 done date:240305120109 stat:UNDELIV err:034 Text:")
    assert "dlvrd:002" in format_receipt("7", MessageState.ENROUTE, NOON, NOON, sub=3, dlvrd=2)


@pytest.mark.parametrize("state", list(MessageState))
def test_every_state_round_trips(state: MessageState) -> None:
    receipt = parse_receipt(format_receipt("42", state, NOON, NOON_ONE))
    assert (receipt.state, receipt.stat) == (state, stat_name(state))


DATES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
    lambda d: d.replace(microsecond=0)
)


@given(
    message_id=st.text(alphabet="0123456789abcdefABCDEF-_", min_size=1, max_size=40),
    state=st.sampled_from(list(MessageState)),
    submit=DATES,
    done=DATES,
    err=st.text(alphabet="0123456789xX", min_size=1, max_size=4),
    text=st.text(max_size=30).filter(lambda t: not t[:1].isspace() and not t.endswith("\x00")),
    sub=st.integers(0, 999),
    dlvrd=st.integers(0, 999),
    twelve=st.booleans(),
)
def test_parse_of_format_is_the_original(
    message_id: str,
    state: MessageState,
    submit: datetime,
    done: datetime,
    err: str,
    text: str,
    sub: int,
    dlvrd: int,
    twelve: bool,
) -> None:
    if not twelve:
        submit, done = submit.replace(second=0), done.replace(second=0)
    formatted = format_receipt(
        message_id, state, submit, done, err=err, text=text, sub=sub, dlvrd=dlvrd, twelve_digit_dates=twelve
    )
    assert parse_receipt(formatted) == Receipt(
        message_id=message_id,
        state=state,
        stat=stat_name(state),
        err=err,
        submit_date=submit,
        done_date=done,
        sub=sub,
        dlvrd=dlvrd,
        text=text,
    )


@given(st.text(max_size=200))
def test_parser_fails_only_with_its_own_error(text: str) -> None:
    try:
        receipt = parse_receipt(text)
    except ReceiptParseError:
        return
    assert receipt.message_id


# --- message ids in hex and decimal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("  00AF12\x00", "af12"),
        ("0000", "0"),
        ("123", "123"),
        ("Msg-XyZ", "Msg-XyZ"),
        ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
        ("", ""),
    ],
)
def test_normalise_message_id(raw: str, normal: str) -> None:
    assert normalise_message_id(raw) == normal


# --- the standard layout is read in one match; anything else by the tolerant scan -----------------------


_ID_CHARS = st.from_regex(r"[0-9a-zA-Z][0-9a-fA-F,;:-]{0,23}", fullmatch=True)
_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(message_id=_ID_CHARS, state=st.sampled_from(sorted(MessageState)), text=_TEXT)
def test_standard_layout_reads_as_the_tolerant_scan_does(
    message_id: str, state: MessageState, text: str
) -> None:
    formatted = format_receipt(message_id, state, NOON, NOON_ONE, text=text)
    # A leading space takes the text off the single-match path: both readings must agree.
    assert parse_receipt(formatted) == parse_receipt(" " + formatted)


@pytest.mark.parametrize(
    "variant",
    [
        "ID:77 SUB:001 DLVRD:001 SUBMIT DATE:2403051200 DONE DATE:2403051201 STAT:DELIVRD ERR:000 TEXT:hi",
        "id:77 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 stat:DELIVRD err:000",
        "id:77 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 stat:DELIVRD err:000 text:\x00",
    ],
)
def test_standard_layout_in_any_case_with_or_without_text(variant: str) -> None:
    receipt = parse_receipt(variant)
    assert (receipt.message_id, receipt.stat, receipt.err, receipt.sub, receipt.dlvrd) == (
        "77",
        "DELIVRD",
        "000",
        1,
        1,
    )
    assert receipt.submit_date == NOON and receipt.done_date == NOON_ONE
    assert receipt.text == ("hi" if "TEXT:hi" in variant else "")


def test_value_with_a_separator_is_cut_by_the_tolerant_scan() -> None:
    receipt = parse_receipt(
        "id:77,x:1 sub:001 dlvrd:001 submit date:2403051200 done date:2403051201 stat:DELIVRD err:000 Text:hi"
    )
    assert receipt.message_id == "77"
    assert receipt.state is MessageState.DELIVERED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2403051200", datetime(2024, 3, 5, 12, 0)),
        ("240305120030", datetime(2024, 3, 5, 12, 0, 30)),
        ("20240305120030", datetime(2024, 3, 5, 12, 0, 30)),
        ("24-03-05 12:00", datetime(2024, 3, 5, 12, 0)),
        ("２４０３０５１２００", None),  # full-width digits are not a date
    ],
)
def test_receipt_date_forms(value: str, expected: datetime | None) -> None:
    assert parse_receipt_date(value) == expected
