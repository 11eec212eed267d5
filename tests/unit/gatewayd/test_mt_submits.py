"""MT rules: segments the carrier wants, what a retry resends, temporary errors, receipt error codes."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest
from pydantic import SecretStr

from gatewayd.config import BindConfig, CarrierConfig, LongMessageMode
from gatewayd.mt import build_submits, carrier_quirks
from gatewayd.mt_policy import (
    LOCAL_RESERVED_STATUS,
    MAX_ERROR_CODE,
    error_code_of,
    is_temporary,
    receipt_error_code,
)
from gatewayd.replies import reply_template
from gatewayd.store.enums import MTKind
from gatewayd.store.mt.values import ClaimedMT
from routing.errors import InvalidQuirks
from routing.keywords import KeywordKind
from routing.variables import render_template
from smpp.concat import Segment, user_data
from smpp.constants import TON, CommandStatus, DataCoding, ESMClass
from smpp.pdu import SubmitSM
from smpp.text import decode_text
from smpp.tlv import Tag


def carrier(
    mode: LongMessageMode = LongMessageMode.UDH8,
    *,
    latin1: bool = False,
    quirks: dict[str, object] | None = None,
) -> CarrierConfig:
    bind = BindConfig(name="m-1", host="127.0.0.1", port=2775, system_id="echat", password=SecretStr("pw"))
    return CarrierConfig(
        name="movistar",
        country="ES",
        short_codes=("997745",),
        binds=(bind,),
        allow_latin1=latin1,
        long_message=mode,
        quirks=MappingProxyType(quirks or {}),
    )


def claimed(
    text: str,
    *,
    mt_id: int = 300,
    done: frozenset[int] = frozenset(),
    receipt: bool = True,
    coding: int | None = None,
) -> ClaimedMT:
    return ClaimedMT(
        id=mt_id,
        kind=MTKind.REPLY,
        carrier="movistar",
        bind_name=None,
        source="997745",
        destination="34600111222",
        text=text,
        data_coding=coding,
        priority=0,
        attempts=1,
        request_receipt=receipt,
        segments=0,
        done_parts=done,
    )


def submits_for(mt: ClaimedMT, configured: CarrierConfig) -> tuple[int, list[tuple[Segment, SubmitSM]]]:
    """What the pipeline submits for ``mt``: through the carrier's quirks (the defaults when none)."""
    return build_submits(mt, configured, carrier_quirks(configured))


def test_short_gsm_text_is_one_plain_submit() -> None:
    total, submits = submits_for(claimed("Hola, ¿qué tal?"), carrier())
    assert total == 1 and len(submits) == 1
    _, pdu = submits[0]
    assert pdu.data_coding == DataCoding.DEFAULT
    assert pdu.destination_addr == "34600111222" and pdu.dest_addr_ton == TON.INTERNATIONAL
    assert pdu.source_addr == "997745" and pdu.source_addr_ton == TON.NETWORK_SPECIFIC
    assert pdu.registered_delivery == 1 and pdu.esm_class == 0


def test_long_ucs2_text_is_split_with_udh_and_the_mt_reference() -> None:
    text = "Привет, как дела? " * 10
    total, submits = submits_for(claimed(text, mt_id=0x1234), carrier())
    assert total == len(submits) == 3
    numbers = []
    joined = b""
    for segment, pdu in submits:
        assert pdu.esm_class & ESMClass.UDHI and pdu.data_coding == DataCoding.UCS2
        assert pdu.short_message[3] == 0x34  # the 8-bit reference is the MT id modulo 256
        numbers.append(segment.part_number)
        joined += user_data(pdu)[1]
    assert numbers == [1, 2, 3]
    assert decode_text(joined, DataCoding.UCS2) == text


def test_sar_carrier_gets_sar_tlvs() -> None:
    _, submits = submits_for(claimed("x" * 200), carrier(LongMessageMode.SAR))
    assert [pdu.tlvs.get_int(Tag.SAR_SEGMENT_SEQNUM) for _, pdu in submits] == [1, 2]
    assert all(pdu.esm_class == 0 for _, pdu in submits)


def test_payload_carrier_gets_one_submit() -> None:
    total, submits = submits_for(claimed("y" * 500), carrier(LongMessageMode.PAYLOAD))
    assert total == 1 and len(submits) == 1
    assert submits[0][1].tlvs.get_bytes(Tag.MESSAGE_PAYLOAD) == b"y" * 500


def test_a_retry_resends_only_the_segments_not_yet_accepted() -> None:
    total, submits = submits_for(claimed("z" * 400, done=frozenset({1, 3})), carrier())
    assert total == 3
    assert [segment.part_number for segment, _ in submits] == [2]


def test_no_receipt_requested_when_the_mt_says_so() -> None:
    _, submits = submits_for(claimed("hola", receipt=False), carrier())
    assert submits[0][1].registered_delivery == 0


def test_alphanumeric_source_is_sent_as_such() -> None:
    mt = dataclasses.replace(claimed("hola"), source="eChat")
    assert submits_for(mt, carrier())[1][0][1].source_addr_ton == TON.ALPHANUMERIC


def test_latin1_only_when_the_carrier_accepts_it() -> None:
    text = "Très bien, ça va: ¤"
    assert submits_for(claimed(text), carrier())[1][0][1].data_coding == DataCoding.UCS2
    assert submits_for(claimed(text), carrier(latin1=True))[1][0][1].data_coding == DataCoding.LATIN1


@pytest.mark.parametrize(
    "status",
    [
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RSYSERR,
    ],
)
def test_temporary_errors_are_retried(status: int) -> None:
    assert is_temporary(status)


@pytest.mark.parametrize(
    "status", [CommandStatus.ESME_RINVDSTADR, CommandStatus.ESME_RX_P_APPN, CommandStatus.ESME_RINVSRCADR]
)
def test_permanent_errors_are_not(status: int) -> None:
    assert not is_temporary(status)


def test_receipt_error_codes() -> None:
    assert receipt_error_code("000") == 0
    assert receipt_error_code("0A1") == 0xA1
    assert receipt_error_code(None) is None
    assert receipt_error_code("n/a") is None
    # past what the store's 32-bit column holds: unknown rather than a batch the database refuses
    assert receipt_error_code("7fffffff") == MAX_ERROR_CODE
    assert receipt_error_code("ffffffff") is None
    assert receipt_error_code("99999999999999999999") is None
    assert receipt_error_code("-1") is None


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        (CommandStatus.ESME_RINVDSTADR, CommandStatus.ESME_RINVDSTADR),
        (0x0400, 0x0400),  # vendor-specific
        (MAX_ERROR_CODE, MAX_ERROR_CODE),
        (0x80000000, LOCAL_RESERVED_STATUS),  # reserved by SMPP 3.4 §5.1.3
        (0xFFFFFFFF, LOCAL_RESERVED_STATUS),
    ],
)
def test_the_error_code_kept_for_a_refused_submit(status: int, kept: int) -> None:
    assert error_code_of(status) == kept


def test_confirmations_fit_one_gsm_sms() -> None:
    from smpp.text import choose_encoding

    for kind in KeywordKind:
        for country in ("ES", "GB"):
            text = render_template(reply_template(kind, country), {"host": "997745"})
            assert "997745" in text
            assert choose_encoding(text) == DataCoding.DEFAULT and len(text) <= 160
    assert "baja" in reply_template(KeywordKind.OPT_OUT, "ES")
    assert "unsubscribed" in reply_template(KeywordKind.OPT_OUT, "GB")


def test_carrier_quirks_rewrite_every_segment() -> None:
    configured = carrier(
        quirks={
            "service_type": "CHAT",
            "short_code_ton": 0,
            "short_code_npi": 1,
            "destination_style": "national",
            "max_registered_delivery": 0,
            "extra_tlvs": {"0x1401": "0a0b"},
        }
    )
    _, submits = submits_for(claimed("x" * 200), configured)
    assert len(submits) == 2
    for _, pdu in submits:
        assert pdu.service_type == "CHAT"
        assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("997745", 0, 1)
        assert pdu.destination_addr == "600111222" and pdu.dest_addr_ton == TON.NATIONAL
        assert pdu.registered_delivery == 0
        assert pdu.tlvs.get_bytes(0x1401) == b"\x0a\x0b"


def test_bad_quirks_name_the_key() -> None:
    with pytest.raises(InvalidQuirks, match="service_type"):
        carrier_quirks(carrier(quirks={"service_type": "TOO-LONG-TYPE"}))
