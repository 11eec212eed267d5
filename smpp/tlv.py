"""Optional parameters (TLVs): standard tags by name with typed values; unknown ones as raw bytes.

A ``TLVs`` value is immutable and keeps the order the TLVs arrived in, so a PDU with vendor TLVs
survives a decode/encode round trip byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum, IntEnum


class Tag(IntEnum):
    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class Kind(Enum):
    """How a TLV value is typed in Python."""

    INT1 = 1
    INT2 = 2
    INT4 = 4
    CSTRING = "cstring"  # NUL-terminated ASCII on the wire, ``str`` in Python
    OCTETS = "octets"  # ``bytes``


#: Wire type of every standard tag. A tag not listed here (vendor 0x1400-0x3FFF, or unknown) is OCTETS.
KINDS: dict[int, Kind] = {
    Tag.DEST_ADDR_SUBUNIT: Kind.INT1,
    Tag.DEST_NETWORK_TYPE: Kind.INT1,
    Tag.DEST_BEARER_TYPE: Kind.INT1,
    Tag.DEST_TELEMATICS_ID: Kind.INT2,
    Tag.SOURCE_ADDR_SUBUNIT: Kind.INT1,
    Tag.SOURCE_NETWORK_TYPE: Kind.INT1,
    Tag.SOURCE_BEARER_TYPE: Kind.INT1,
    Tag.SOURCE_TELEMATICS_ID: Kind.INT1,
    Tag.QOS_TIME_TO_LIVE: Kind.INT4,
    Tag.PAYLOAD_TYPE: Kind.INT1,
    Tag.ADDITIONAL_STATUS_INFO_TEXT: Kind.CSTRING,
    Tag.RECEIPTED_MESSAGE_ID: Kind.CSTRING,
    Tag.MS_MSG_WAIT_FACILITIES: Kind.INT1,
    Tag.PRIVACY_INDICATOR: Kind.INT1,
    Tag.SOURCE_SUBADDRESS: Kind.OCTETS,
    Tag.DEST_SUBADDRESS: Kind.OCTETS,
    Tag.USER_MESSAGE_REFERENCE: Kind.INT2,
    Tag.USER_RESPONSE_CODE: Kind.INT1,
    Tag.SOURCE_PORT: Kind.INT2,
    Tag.DESTINATION_PORT: Kind.INT2,
    Tag.SAR_MSG_REF_NUM: Kind.INT2,
    Tag.LANGUAGE_INDICATOR: Kind.INT1,
    Tag.SAR_TOTAL_SEGMENTS: Kind.INT1,
    Tag.SAR_SEGMENT_SEQNUM: Kind.INT1,
    Tag.SC_INTERFACE_VERSION: Kind.INT1,
    Tag.CALLBACK_NUM_PRES_IND: Kind.INT1,
    Tag.CALLBACK_NUM_ATAG: Kind.OCTETS,
    Tag.NUMBER_OF_MESSAGES: Kind.INT1,
    Tag.CALLBACK_NUM: Kind.OCTETS,
    Tag.DPF_RESULT: Kind.INT1,
    Tag.SET_DPF: Kind.INT1,
    Tag.MS_AVAILABILITY_STATUS: Kind.INT1,
    Tag.NETWORK_ERROR_CODE: Kind.OCTETS,
    Tag.MESSAGE_PAYLOAD: Kind.OCTETS,
    Tag.DELIVERY_FAILURE_REASON: Kind.INT1,
    Tag.MORE_MESSAGES_TO_SEND: Kind.INT1,
    Tag.MESSAGE_STATE: Kind.INT1,
    Tag.USSD_SERVICE_OP: Kind.INT1,
    Tag.DISPLAY_TIME: Kind.INT1,
    Tag.SMS_SIGNAL: Kind.INT2,
    Tag.MS_VALIDITY: Kind.INT1,
    Tag.ALERT_ON_MESSAGE_DELIVERY: Kind.OCTETS,
    Tag.ITS_REPLY_TYPE: Kind.INT1,
    Tag.ITS_SESSION_INFO: Kind.OCTETS,
}

TLVValue = int | str | bytes


class TLVs:
    """An immutable, ordered collection of ``(tag, value)`` pairs.

    Look-ups by tag return the first occurrence. Values of standard tags are typed by ``KINDS``
    (``int`` / ``str`` / ``bytes``); a standard tag whose wire length did not match its type, and every
    unknown or vendor tag, holds ``bytes`` so it can be written back unchanged.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: Iterable[tuple[int, TLVValue]] | Mapping[int, TLVValue] = ()) -> None:
        # A tuple or list is what nearly every caller passes: skip the (slow) ABC check for Mapping.
        pairs: tuple[tuple[int, TLVValue], ...]
        if isinstance(items, (tuple, list)):
            pairs = tuple(items)
        elif isinstance(items, Mapping):
            pairs = tuple(items.items())
        else:
            pairs = tuple(items)
        self._items = pairs
        index: dict[int, TLVValue] = {}
        for tag, value in pairs:
            index.setdefault(int(tag), value)
        self._index = index

    @classmethod
    def _trusted(cls, items: tuple[tuple[int, TLVValue], ...], index: dict[int, TLVValue]) -> TLVs:
        """For the decoder, which has built both already: ``items`` with plain int tags, and ``index``
        holding the first value of each tag."""
        tlvs = cls.__new__(cls)
        tlvs._items = items
        tlvs._index = index
        return tlvs

    def get(self, tag: int, default: TLVValue | None = None) -> TLVValue | None:
        return self._index.get(tag, default)

    def get_int(self, tag: int) -> int | None:
        value = self._index.get(tag)
        return value if isinstance(value, int) else None

    def get_str(self, tag: int) -> str | None:
        value = self._index.get(tag)
        return value if isinstance(value, str) else None

    def get_bytes(self, tag: int) -> bytes | None:
        value = self._index.get(tag)
        return value if isinstance(value, bytes) else None

    def __getitem__(self, tag: int) -> TLVValue:
        return self._index[tag]

    def __contains__(self, tag: object) -> bool:
        return tag in self._index

    def __iter__(self) -> Iterator[tuple[int, TLVValue]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLVs) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"{_tag_name(t)}={v!r}" for t, v in self._items)
        return f"TLVs({inner})"

    def with_tlv(self, tag: int, value: TLVValue) -> TLVs:
        """A copy with ``tag`` set to ``value`` (replacing an existing one in place)."""
        if tag in self._index:
            return TLVs((t, value if t == tag else v) for t, v in self._items)
        return TLVs((*self._items, (tag, value)))

    def without(self, tag: int) -> TLVs:
        return TLVs((t, v) for t, v in self._items if t != tag)


EMPTY_TLVS = TLVs()


def _tag_name(tag: int) -> str:
    try:
        return Tag(tag).name.lower()
    except ValueError:
        return f"0x{tag:04X}"
