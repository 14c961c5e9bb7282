"""Initial schema: principals, devices, channels, messages, nonces and the append-only log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: Tables of the transparency log: no row may ever be changed or removed.
LOG_TABLES = ("audit_entry", "tree_hash", "checkpoint", "cosignature")


def _s(n: int) -> sa.String:
    return sa.String(length=n)


def upgrade() -> None:
    op.create_table(
        "principal",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("display_name", _s(200), nullable=False),
        sa.Column("nation", _s(3), nullable=False, index=True),
        sa.Column("kind", _s(16), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("clearance", _s(32), nullable=False),
        sa.Column("compartments", sa.Text(), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "device",
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("principal_id", _s(64), sa.ForeignKey("principal.id"), nullable=False, index=True),
        sa.Column("signed_bundle", sa.Text(), nullable=False),
        sa.Column("suite", _s(32), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("enrol_index", sa.BigInteger(), nullable=True),
        sa.Column("revoke_index", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "enrolment_code",
        sa.Column("code_hash", _s(64), primary_key=True),
        sa.Column("principal_id", _s(64), sa.ForeignKey("principal.id"), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "channel",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("name", _s(200), nullable=False),
        sa.Column("ceiling", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "channel_member",
        sa.Column("channel_id", _s(64), sa.ForeignKey("channel.id"), primary_key=True),
        sa.Column("principal_id", _s(64), sa.ForeignKey("principal.id"), primary_key=True, index=True),
    )
    op.create_table(
        "message",
        sa.Column("id", _s(36), primary_key=True),
        sa.Column("channel_id", _s(64), sa.ForeignKey("channel.id"), nullable=False, index=True),
        sa.Column("sender_device", _s(32), nullable=False),
        sa.Column("sender_principal", _s(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("classification", _s(32), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=True),
        sa.Column("digest", _s(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
        sa.Column("expired_at", sa.DateTime(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "delivery",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", _s(36), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("device_id", _s(32), sa.ForeignKey("device.id"), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=True),
        sa.Column("acked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_delivery_device_seq", "delivery", ["device_id", "seq"])
    op.create_index("ix_delivery_message_device", "delivery", ["message_id", "device_id"], unique=True)
    op.create_table(
        "request_nonce",
        sa.Column("keyid", _s(32), primary_key=True),
        sa.Column("nonce", _s(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False, index=True),
    )
    op.create_table(
        "audit_entry",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("type", _s(32), nullable=False, index=True),
        sa.Column("actor", _s(64), nullable=False, index=True),
        sa.Column("time", sa.DateTime(), nullable=False, index=True),
        sa.Column("subject", _s(64), nullable=True, index=True),
    )
    op.create_table(
        "tree_hash",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "checkpoint",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "cosignature",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("witness", _s(200), primary_key=True),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    """Refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the log tables, in the database."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION liaison_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'liaison: % on % refused: the audit log is append-only', "
            "TG_OP, TG_TABLE_NAME; END $$"
        )
        for table in LOG_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION liaison_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION liaison_append_only()"
            )
    else:
        for table in LOG_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, 'liaison: {verb} on {table} refused: the audit log is "
                    "append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOG_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS liaison_append_only()")
    for table in (
        "cosignature",
        "checkpoint",
        "tree_hash",
        "audit_entry",
        "request_nonce",
        "delivery",
        "message",
        "channel_member",
        "channel",
        "enrolment_code",
        "device",
        "principal",
    ):
        op.drop_table(table)
