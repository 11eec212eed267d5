"""Initial schema: accounts and panel sessions, subscribers, conversations, MOs, the MT outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 02:09:27.597112
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum("admin", "master", "operator", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("lock_reason", sa.String(length=255), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column(
            "presence",
            sa.Enum("online", "paused", "offline", name="presence", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("max_open_conversations", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["accounts.id"], name=op.f("fk_accounts_created_by_accounts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_accounts_username")),
    )
    op.create_table(
        "early_receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_receipts")),
    )
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_early_receipts_carrier_smsc_message_id", ["carrier", "smsc_message_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_early_receipts_received_at"), ["received_at"], unique=False)

    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_ip_attempted_at", ["ip", "attempted_at"], unique=False)

    op.create_table(
        "subscribers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("client_id", sa.String(length=16), nullable=False),
        sa.Column("msisdn", sa.String(length=20), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("alias", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("banned", sa.Boolean(), nullable=False),
        sa.Column("banned_reason", sa.String(length=255), nullable=True),
        sa.Column("banned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_reset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mo_count", sa.Integer(), nullable=False),
        sa.Column("mt_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("client_id", name=op.f("uq_subscribers_client_id")),
        sa.UniqueConstraint("msisdn", name=op.f("uq_subscribers_msisdn")),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum("waiting", "open", "closed", name="conversationstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("service", sa.String(length=32), nullable=True),
        sa.Column("assigned_operator_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_mo_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_mt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assigned_operator_id"],
            ["accounts.id"],
            name=op.f("fk_conversations_assigned_operator_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_conversations_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversations_assigned_operator_id"), ["assigned_operator_id"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_status_waiting_since", ["status", "waiting_since"], unique=False
        )
        batch_op.create_index(
            "uq_conversations_active",
            ["subscriber_id", "short_code"],
            unique=True,
            sqlite_where=sa.text("status != 'closed'"),
            postgresql_where=sa.text("status != 'closed'"),
        )

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_web_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_account_id"), ["account_id"], unique=False)

    op.create_table(
        "mo_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("bind_name", sa.String(length=64), nullable=True),
        sa.Column("short_code", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=True),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_mo_messages_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mo_messages_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mo_messages")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_mo_messages_dedup_key")),
    )
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mo_messages_conversation_id"), ["conversation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mo_messages_received_at"), ["received_at"], unique=False)
        batch_op.create_index(
            "ix_mo_messages_short_code_received_at", ["short_code", "received_at"], unique=False
        )
        batch_op.create_index(
            "ix_mo_messages_subscriber_id_received_at", ["subscriber_id", "received_at"], unique=False
        )

    op.create_table(
        "mt_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "sending",
                "accepted",
                "delivered",
                "failed",
                "expired",
                "refused",
                "cancelled",
                name="mtstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "kind",
            sa.Enum("reply", "push", "system", "mass", name="mtkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=True),
        sa.Column("segments", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("request_receipt", sa.Boolean(), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("bind_name", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("in_reply_to_mo_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("final_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_owner", sa.String(length=64), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_mt_messages_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["in_reply_to_mo_id"],
            ["mo_messages.id"],
            name=op.f("fk_mt_messages_in_reply_to_mo_id_mo_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["accounts.id"],
            name=op.f("fk_mt_messages_operator_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mt_messages_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mt_messages")),
    )
    with op.batch_alter_table("mt_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mt_messages_conversation_id"), ["conversation_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mt_messages_in_reply_to_mo_id"), ["in_reply_to_mo_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mt_messages_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index(
            "ix_mt_messages_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_mt_messages_subscriber_id_created_at", ["subscriber_id", "created_at"], unique=False
        )

    op.create_table(
        "mt_parts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("part_no", sa.SmallInteger(), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("bind_name", sa.String(length=64), nullable=True),
        sa.Column("smsc_message_id", sa.String(length=65), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "accepted",
                "rejected",
                "delivered",
                "undeliverable",
                "expired",
                name="partstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receipt_state", sa.String(length=16), nullable=True),
        sa.Column("receipt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mt_id"], ["mt_messages.id"], name=op.f("fk_mt_parts_mt_id_mt_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mt_parts")),
        sa.UniqueConstraint("mt_id", "part_no", name="uq_mt_parts_mt_id_part_no"),
    )
    with op.batch_alter_table("mt_parts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mt_parts_carrier_smsc_message_id", ["carrier", "smsc_message_id"], unique=False
        )

    op.create_table(
        "mt_status_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mt_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "sending",
                "accepted",
                "delivered",
                "failed",
                "expired",
                "refused",
                "cancelled",
                name="mtstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["mt_id"],
            ["mt_messages.id"],
            name=op.f("fk_mt_status_history_mt_id_mt_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mt_status_history")),
    )
    with op.batch_alter_table("mt_status_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mt_status_history_mt_id"), ["mt_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mt_status_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mt_status_history_mt_id"))

    op.drop_table("mt_status_history")
    with op.batch_alter_table("mt_parts", schema=None) as batch_op:
        batch_op.drop_index("ix_mt_parts_carrier_smsc_message_id")

    op.drop_table("mt_parts")
    with op.batch_alter_table("mt_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_mt_messages_subscriber_id_created_at")
        batch_op.drop_index("ix_mt_messages_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_mt_messages_operator_id"))
        batch_op.drop_index(batch_op.f("ix_mt_messages_in_reply_to_mo_id"))
        batch_op.drop_index(batch_op.f("ix_mt_messages_conversation_id"))

    op.drop_table("mt_messages")
    with op.batch_alter_table("mo_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_mo_messages_subscriber_id_received_at")
        batch_op.drop_index("ix_mo_messages_short_code_received_at")
        batch_op.drop_index(batch_op.f("ix_mo_messages_received_at"))
        batch_op.drop_index(batch_op.f("ix_mo_messages_conversation_id"))

    op.drop_table("mo_messages")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_account_id"))

    op.drop_table("web_sessions")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_conversations_active",
            sqlite_where=sa.text("status != 'closed'"),
            postgresql_where=sa.text("status != 'closed'"),
        )
        batch_op.drop_index("ix_conversations_status_waiting_since")
        batch_op.drop_index(batch_op.f("ix_conversations_assigned_operator_id"))

    op.drop_table("conversations")
    op.drop_table("subscribers")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_ip_attempted_at")

    op.drop_table("login_attempts")
    with op.batch_alter_table("early_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_early_receipts_received_at"))
        batch_op.drop_index("ix_early_receipts_carrier_smsc_message_id")

    op.drop_table("early_receipts")
    op.drop_table("accounts")
