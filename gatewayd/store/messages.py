"""The message tables: MOs received (with the parts of long MOs and the answers not known delivered), the
MT outbox with its parts and history, and early receipts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base, utcnow
from gatewayd.store.enums import MTKind, MTStatus, PartStatus, enum_type
from gatewayd.store.subscribers import ID_TYPE

#: The claim-order index's rows: queued MTs (every smallint priority), for the statements that say so
#: (PostgreSQL 17 drops a test of NOT NULL on a column that is NOT NULL, so it would not do).
CLAIM_ORDER_PREDICATE = "status = 'queued' AND priority >= -32768"


class MOMessage(Base):
    """One mobile-originated SMS, reassembled. The manual's variables come from here: mensaje=``text``,
    host=``short_code``, operador=``carrier``, telefono=the subscriber's MSISDN, hora/fecha=``received_at``
    in its service's time zone, pais=``country`` (rendered by ``gatewayd.outbox``).

    ``dedup_key`` digests the content as the SMSC sent it; a later MO with the same key is a redelivery
    of this one only while ``answer_id`` names a row of ``mo_unconfirmed`` (its deliver_sm_resp may not
    have reached the SMSC). ``raw`` holds the octets when ``text`` cannot say everything they do."""

    __tablename__ = "mo_messages"
    # Read per subscriber or per conversation, and by dedup_key when an MO may be a redelivery: every
    # further index would cost each MO insert.
    __table_args__ = (Index("ix_mo_messages_subscriber_id_received_at", "subscriber_id", "received_at"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(64), index=True)
    # Subscriber and conversation ids without foreign keys: the ingest creates or reads both in the
    # transaction that inserts the MO (see migration 0005).
    subscriber_id: Mapped[int] = mapped_column(ID_TYPE)
    conversation_id: Mapped[int | None] = mapped_column(ID_TYPE, index=True, default=None)
    carrier: Mapped[str] = mapped_column(String(32))
    bind_name: Mapped[str | None] = mapped_column(String(64), default=None)
    short_code: Mapped[str] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    text: Mapped[str] = mapped_column(Text)
    data_coding: Mapped[int] = mapped_column(SmallInteger, default=0)
    parts: Mapped[int] = mapped_column(SmallInteger, default=1)
    incomplete: Mapped[bool] = mapped_column(default=False)
    smsc_message_id: Mapped[str | None] = mapped_column(String(65), default=None)
    received_at: Mapped[datetime]
    service: Mapped[str | None] = mapped_column(String(32), default=None)
    keyword: Mapped[str | None] = mapped_column(String(32), default=None)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: The ``mo_unconfirmed`` row of the answer this MO's last PDU got (no foreign key: that row goes away).
    answer_id: Mapped[int | None] = mapped_column(ID_TYPE, default=None)


class MOUnconfirmed(Base):
    """The deliver_sm_resp of one group of MOs and MO parts (one commit, one bind connection) not known to
    have reached the SMSC: written in the transaction that stores them, deleted once their answers went
    out in time on a connection that stayed up. What a crash, a broken connection or a late answer
    leaves here is what an SMSC may deliver again."""

    __tablename__ = "mo_unconfirmed"
    # Rows are deleted as answers are confirmed: SQLite must never hand a deleted id out again, or an
    # MO of long ago would seem to have the answer of the batch that got the id.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    bind_name: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(index=True)


class MOPart(Base):
    """One part of a long MO, stored and answered on its own. Once every part of its message
    (``set_key``) is stored, the parts are assembled into one ``mo_messages`` row and ``mo_id`` is set;
    parts still waiting after the reassembly timeout become one MO flagged incomplete. Assembled
    parts stay for the redelivery window, so a part delivered again is recognised (``dedup_key``)."""

    __tablename__ = "mo_parts"
    __table_args__ = (
        Index(
            "ix_mo_parts_waiting_set_key",
            "set_key",
            postgresql_where=text("mo_id IS NULL"),
            sqlite_where=text("mo_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    set_key: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(32), index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    bind_name: Mapped[str | None] = mapped_column(String(64), default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    #: The subscriber as E.164 digits without '+' ('34600111222'), as every table holds numbers.
    msisdn: Mapped[str] = mapped_column(String(20))
    short_code: Mapped[str] = mapped_column(String(16))
    reference: Mapped[int]
    total: Mapped[int] = mapped_column(SmallInteger)
    part_no: Mapped[int] = mapped_column(SmallInteger)
    data_coding: Mapped[int] = mapped_column(SmallInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(index=True)
    answer_id: Mapped[int | None] = mapped_column(ID_TYPE, default=None)
    mo_id: Mapped[int | None] = mapped_column(ID_TYPE, default=None)


class MTMessage(Base):
    """One mobile-terminated SMS in the outbox. While ``sending``, ``claim_owner`` (a daemon instance)
    holds it until ``claim_expires_at``; ``segments`` is set when it is split for sending."""

    __tablename__ = "mt_messages"
    # Every status change rewrites the row and adds an entry to each index whose predicate the new row
    # meets, so on PostgreSQL the indexes leave out the rows they are never used for: the outbox index
    # only queued/sending MTs (what claims, reconciliation and the depth gauge read), the foreign-key
    # indexes only rows with a key (they serve lookups by key and ON DELETE SET NULL). SQLite keeps the
    # outbox index whole: its planner cannot match a bound ``status = ?`` against an IN-list predicate.
    __table_args__ = (
        Index(
            "ix_mt_messages_outbox_status_next_attempt_at",
            "status",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        # The claim's order within a carrier's priority: a claim reads each one's due rows from the
        # front of its range instead of sorting every queued row (gatewayd/store/mt/_pg.py). Its
        # predicate names the priority (any smallint) so that only a statement that says so uses it: any
        # other test of queued MTs (the held pushes' probe) took it for a small index and scanned it.
        Index(
            "ix_mt_messages_claim_order",
            "carrier",
            "priority",
            "next_attempt_at",
            "id",
            postgresql_where=text(CLAIM_ORDER_PREDICATE),
            sqlite_where=text(CLAIM_ORDER_PREDICATE),
        ),
        Index("ix_mt_messages_subscriber_id_created_at", "subscriber_id", "created_at"),
        Index(
            "ix_mt_messages_conversation_id",
            "conversation_id",
            postgresql_where=text("conversation_id IS NOT NULL"),
            sqlite_where=text("conversation_id IS NOT NULL"),
        ),
        Index(
            "ix_mt_messages_operator_id",
            "operator_id",
            postgresql_where=text("operator_id IS NOT NULL"),
            sqlite_where=text("operator_id IS NOT NULL"),
        ),
        Index(
            "ix_mt_messages_in_reply_to_mo_id",
            "in_reply_to_mo_id",
            postgresql_where=text("in_reply_to_mo_id IS NOT NULL"),
            sqlite_where=text("in_reply_to_mo_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    status: Mapped[MTStatus] = mapped_column(enum_type(MTStatus), default=MTStatus.QUEUED)
    kind: Mapped[MTKind] = mapped_column(enum_type(MTKind))
    text: Mapped[str] = mapped_column(Text)
    data_coding: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    segments: Mapped[int] = mapped_column(SmallInteger, default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    request_receipt: Mapped[bool] = mapped_column(default=True)
    carrier: Mapped[str] = mapped_column(String(32))
    bind_name: Mapped[str | None] = mapped_column(String(64), default=None)
    source: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(20))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), default=None
    )
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), default=None
    )
    operator_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    in_reply_to_mo_id: Mapped[int | None] = mapped_column(
        ForeignKey("mo_messages.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    final_at: Mapped[datetime | None] = mapped_column(default=None)
    claim_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    #: What the MT adds to its client's spend on a billed service, in minor units (None: not billed);
    #: given back when it ends failed, expired or refused (``gatewayd.store.premium.credit``).
    charge: Mapped[int | None] = mapped_column(default=None)


class MTPart(Base):
    """One segment of an MT as submitted; receipts find it by ``(carrier, smsc_message_id)``."""

    __tablename__ = "mt_parts"
    __table_args__ = (
        UniqueConstraint("mt_id", "part_no", name="uq_mt_parts_mt_id_part_no"),
        Index("ix_mt_parts_carrier_smsc_message_id", "carrier", "smsc_message_id"),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    #: The MT's id, without a foreign key: parts are written only with their MT locked (see migration 0004).
    mt_id: Mapped[int] = mapped_column(ID_TYPE)
    part_no: Mapped[int] = mapped_column(SmallInteger)
    carrier: Mapped[str] = mapped_column(String(32))
    bind_name: Mapped[str | None] = mapped_column(String(64), default=None)
    smsc_message_id: Mapped[str | None] = mapped_column(String(65), default=None)
    status: Mapped[PartStatus] = mapped_column(enum_type(PartStatus))
    submitted_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    receipt_state: Mapped[str | None] = mapped_column(String(16), default=None)
    receipt_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[int | None] = mapped_column(default=None)


class MTStatusHistory(Base):
    """Every status an MT went through, with when and why."""

    __tablename__ = "mt_status_history"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    #: The MT's id, without a foreign key: history is written only with its MT locked (see migration 0004).
    mt_id: Mapped[int] = mapped_column(ID_TYPE, index=True)
    status: Mapped[MTStatus] = mapped_column(enum_type(MTStatus))
    at: Mapped[datetime]
    detail: Mapped[str | None] = mapped_column(String(255), default=None)


class EarlyReceipt(Base):
    """A delivery receipt that arrived before the submit_sm_resp carrying its message id was recorded:
    kept durably and applied when the part is recorded."""

    __tablename__ = "early_receipts"
    __table_args__ = (Index("ix_early_receipts_carrier_smsc_message_id", "carrier", "smsc_message_id"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    carrier: Mapped[str] = mapped_column(String(32))
    smsc_message_id: Mapped[str] = mapped_column(String(65))
    state: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[int | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(index=True)
