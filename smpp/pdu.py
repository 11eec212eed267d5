"""Every SMPP 3.4 PDU as a frozen, slotted dataclass.

Strings (C-octet strings) are ``str`` decoded as Latin-1, so any byte survives a round trip;
``short_message`` is ``bytes`` (its meaning depends on ``data_coding``, see ``smpp.text``).
``sequence_number`` and ``command_status`` are header fields: a request built by the application
leaves ``sequence_number`` at 0 and the session assigns one when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from smpp._fastinit import fast_init
from smpp.constants import INTERFACE_VERSION_34, CommandID
from smpp.tlv import EMPTY_TLVS, TLVs


@dataclass(frozen=True, slots=True, kw_only=True)
class PDU:
    command_id: ClassVar[int]
    #: The PDU class that answers this one (``None`` for responses, outbind and alert_notification).
    response_class: ClassVar[type[PDU] | None] = None

    sequence_number: int = 0
    command_status: int = 0


# --- session management ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(PDU):
    command_id: ClassVar[int] = CommandID.BIND_TRANSMITTER_RESP
    system_id: str = ""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(PDU):
    command_id: ClassVar[int] = CommandID.BIND_RECEIVER_RESP
    system_id: str = ""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(PDU):
    command_id: ClassVar[int] = CommandID.BIND_TRANSCEIVER_RESP
    system_id: str = ""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bind(PDU):
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id: ClassVar[int] = CommandID.BIND_TRANSMITTER
    response_class: ClassVar[type[PDU] | None] = BindTransmitterResp


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(_Bind):
    command_id: ClassVar[int] = CommandID.BIND_RECEIVER
    response_class: ClassVar[type[PDU] | None] = BindReceiverResp


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id: ClassVar[int] = CommandID.BIND_TRANSCEIVER
    response_class: ClassVar[type[PDU] | None] = BindTransceiverResp


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbind(PDU):
    command_id: ClassVar[int] = CommandID.OUTBIND
    system_id: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(PDU):
    command_id: ClassVar[int] = CommandID.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(PDU):
    command_id: ClassVar[int] = CommandID.UNBIND
    response_class: ClassVar[type[PDU] | None] = UnbindResp


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(PDU):
    command_id: ClassVar[int] = CommandID.GENERIC_NACK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(PDU):
    command_id: ClassVar[int] = CommandID.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(PDU):
    command_id: ClassVar[int] = CommandID.ENQUIRE_LINK
    response_class: ClassVar[type[PDU] | None] = EnquireLinkResp


# --- message submission / delivery ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSMResp(PDU):
    command_id: ClassVar[int] = CommandID.SUBMIT_SM_RESP
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessage(PDU):
    """Fields shared by submit_sm and deliver_sm (SMPP 3.4 §4.4.1 / §4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSM(_ShortMessage):
    command_id: ClassVar[int] = CommandID.SUBMIT_SM
    response_class: ClassVar[type[PDU] | None] = SubmitSMResp


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSMResp(PDU):
    command_id: ClassVar[int] = CommandID.DELIVER_SM_RESP
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSM(_ShortMessage):
    command_id: ClassVar[int] = CommandID.DELIVER_SM
    response_class: ClassVar[type[PDU] | None] = DeliverSMResp


@dataclass(frozen=True, slots=True)
class SMEAddress:
    """A submit_multi destination: an SME address (dest_flag 1)."""

    ton: int = 0
    npi: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class DistributionList:
    """A submit_multi destination: a distribution list name (dest_flag 2)."""

    name: str = ""


@dataclass(frozen=True, slots=True)
class UnsuccessSME:
    """One failed destination in submit_multi_resp."""

    ton: int = 0
    npi: int = 0
    address: str = ""
    error_status_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMultiResp(PDU):
    command_id: ClassVar[int] = CommandID.SUBMIT_MULTI_RESP
    message_id: str = ""
    unsuccess_smes: tuple[UnsuccessSME, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMulti(PDU):
    command_id: ClassVar[int] = CommandID.SUBMIT_MULTI
    response_class: ClassVar[type[PDU] | None] = SubmitMultiResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: tuple[SMEAddress | DistributionList, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSMResp(PDU):
    command_id: ClassVar[int] = CommandID.DATA_SM_RESP
    message_id: str = ""
    tlvs: TLVs = EMPTY_TLVS


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSM(PDU):
    command_id: ClassVar[int] = CommandID.DATA_SM
    response_class: ClassVar[type[PDU] | None] = DataSMResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: TLVs = EMPTY_TLVS


# --- ancillary --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySMResp(PDU):
    command_id: ClassVar[int] = CommandID.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySM(PDU):
    command_id: ClassVar[int] = CommandID.QUERY_SM
    response_class: ClassVar[type[PDU] | None] = QuerySMResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSMResp(PDU):
    command_id: ClassVar[int] = CommandID.CANCEL_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSM(PDU):
    command_id: ClassVar[int] = CommandID.CANCEL_SM
    response_class: ClassVar[type[PDU] | None] = CancelSMResp
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSMResp(PDU):
    command_id: ClassVar[int] = CommandID.REPLACE_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSM(PDU):
    command_id: ClassVar[int] = CommandID.REPLACE_SM
    response_class: ClassVar[type[PDU] | None] = ReplaceSMResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotification(PDU):
    command_id: ClassVar[int] = CommandID.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: TLVs = EMPTY_TLVS


#: command_id -> PDU class, for the decoder.
PDU_CLASSES: dict[int, type[PDU]] = {
    cls.command_id: cls
    for cls in (
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        Unbind,
        UnbindResp,
        GenericNack,
        EnquireLink,
        EnquireLinkResp,
        SubmitSM,
        SubmitSMResp,
        DeliverSM,
        DeliverSMResp,
        SubmitMulti,
        SubmitMultiResp,
        DataSM,
        DataSMResp,
        QuerySM,
        QuerySMResp,
        CancelSM,
        CancelSMResp,
        ReplaceSM,
        ReplaceSMResp,
        AlertNotification,
    )
}

# A PDU is built for every PDU received and sent: store fields through their slots (see smpp._fastinit).
for _cls in (*PDU_CLASSES.values(), SMEAddress, DistributionList, UnsuccessSME):
    fast_init(_cls)
del _cls
