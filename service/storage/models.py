"""Database tables (SQLAlchemy 2 typed declarative). The Alembic migrations create exactly these
(`tests/service/test_schema.py` compares them with a migrated database).

Timestamps are `UTCDateTime`: timezone-aware UTC in Python, naive UTC in the column (the
schema predates this type and both databases store it the same way); a naive datetime is
refused on the way in, never interpreted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Attachment",
    "AttachmentFetch",
    "AuditEntry",
    "AuditOpening",
    "Base",
    "Channel",
    "ChannelMember",
    "Checkpoint",
    "Cosignature",
    "Delivery",
    "Device",
    "DirectoryStatement",
    "EnrolmentCode",
    "MapLeaf",
    "Message",
    "Nonce",
    "Principal",
    "TreeHash",
    "UTCDateTime",
    "to_column_time",
]


def to_column_time(value: datetime) -> datetime:
    """An aware datetime as the naive-UTC value the columns hold; a naive one is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: Liaison stores only timezone-aware UTC times")
    return value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else to_column_time(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, int: Integer, bytes: LargeBinary}


def _s(n: int) -> String:
    return String(n)


class Principal(Base):
    __tablename__ = "principal"
    id: Mapped[str] = mapped_column(_s(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(_s(200))
    nation: Mapped[str] = mapped_column(_s(3), index=True)
    kind: Mapped[str] = mapped_column(_s(16))  # person | system
    roles: Mapped[str] = mapped_column(Text)  # JSON list
    clearance: Mapped[str] = mapped_column(_s(32))
    compartments: Mapped[str] = mapped_column(Text)  # JSON list
    status: Mapped[str] = mapped_column(_s(16))  # active | suspended
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Device(Base):
    __tablename__ = "device"
    id: Mapped[str] = mapped_column(_s(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(_s(64), ForeignKey("principal.id"), index=True)
    signed_bundle: Mapped[str] = mapped_column(Text)  # JCS JSON as enrolled
    suite: Mapped[str] = mapped_column(_s(32))
    enrolled_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    enrol_index: Mapped[int | None] = mapped_column(BigInteger)
    revoke_index: Mapped[int | None] = mapped_column(BigInteger)


class EnrolmentCode(Base):
    __tablename__ = "enrolment_code"
    code_hash: Mapped[str] = mapped_column(_s(64), primary_key=True)  # the code is never stored
    principal_id: Mapped[str] = mapped_column(_s(64), ForeignKey("principal.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # The issuing device id, or "system" for the operator's genesis root codes (NULL: a code
    # issued before 0002, treated as the operator's).
    issued_by: Mapped[str | None] = mapped_column(_s(64))
    # The live KEM challenge of this code (POST /v1/enrol/challenge): its hex SHA-256, the
    # device it was sealed to and when it lapses. A newer challenge replaces it.
    challenge_hash: Mapped[str | None] = mapped_column(_s(64))
    challenge_device: Mapped[str | None] = mapped_column(_s(32))
    challenge_expires_at: Mapped[datetime | None]
    # When an admin cancelled the code (DELETE /v1/admin/enrolment-codes/{id}); NULL if never.
    cancelled_at: Mapped[datetime | None]
    # Protocol 9.8: the invitation key (base64url Ed25519 public key) by which the enrolling
    # device finds this row, the admin's signed invitation statement (JCS JSON), and the
    # anchors object (JCS JSON) the invitation's digest names. NULL for genesis root codes.
    invitation_key: Mapped[str | None] = mapped_column(_s(43), unique=True, index=True)
    invitation: Mapped[str | None] = mapped_column(Text)
    anchors_digest: Mapped[str | None] = mapped_column(_s(43), index=True)
    anchors: Mapped[str | None] = mapped_column(Text)


class Channel(Base):
    __tablename__ = "channel"
    id: Mapped[str] = mapped_column(_s(64), primary_key=True)
    name: Mapped[str] = mapped_column(_s(200))
    ceiling: Mapped[str] = mapped_column(Text)  # label JSON
    created_at: Mapped[datetime]


class ChannelMember(Base):
    __tablename__ = "channel_member"
    channel_id: Mapped[str] = mapped_column(_s(64), ForeignKey("channel.id"), primary_key=True)
    principal_id: Mapped[str] = mapped_column(
        _s(64), ForeignKey("principal.id"), primary_key=True, index=True
    )


class Message(Base):
    __tablename__ = "message"
    id: Mapped[str] = mapped_column(_s(36), primary_key=True)
    channel_id: Mapped[str] = mapped_column(_s(64), ForeignKey("channel.id"), index=True)
    sender_device: Mapped[str] = mapped_column(_s(32))
    sender_principal: Mapped[str] = mapped_column(_s(64))
    label: Mapped[str] = mapped_column(Text)  # label JSON (canonical)
    classification: Mapped[str] = mapped_column(_s(32))
    envelope: Mapped[bytes | None]
    digest: Mapped[str] = mapped_column(_s(64))
    size: Mapped[int]
    created: Mapped[datetime]
    accepted_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    expired_at: Mapped[datetime | None]
    log_index: Mapped[int] = mapped_column(BigInteger)


class Attachment(Base):
    """An attachment (protocol 11), from its upload's start; its ciphertext is in the blob
    store under its id. `state`: uploading, complete (its root checked), attached (its message
    was accepted), deleting (its message expired; the ciphertext is being deleted), deleted."""

    __tablename__ = "attachment"
    id: Mapped[str] = mapped_column(_s(28), primary_key=True)
    message_id: Mapped[str] = mapped_column(_s(36), index=True)
    device_id: Mapped[str] = mapped_column(_s(32), ForeignKey("device.id"))
    principal_id: Mapped[str] = mapped_column(_s(64), ForeignKey("principal.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    part_size: Mapped[int]
    state: Mapped[str] = mapped_column(_s(16), index=True)
    root: Mapped[str | None] = mapped_column(_s(43))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class AttachmentFetch(Base):
    """A device's first download of an attachment (logged once, as message.attachment_fetched)."""

    __tablename__ = "attachment_fetch"
    attachment_id: Mapped[str] = mapped_column(_s(28), ForeignKey("attachment.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(_s(32), ForeignKey("device.id"), primary_key=True)
    fetched_at: Mapped[datetime]


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_device_seq", "device_id", "seq"),
        Index("ix_delivery_message_device", "message_id", "device_id", unique=True),
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(_s(36), ForeignKey("message.id"))
    device_id: Mapped[str] = mapped_column(_s(32), ForeignKey("device.id"))
    fetched_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]


class DirectoryStatement(Base):
    """One signed directory statement (protocol 9.2), with every disclosure of its commitments.

    Append-only (triggers): a record's statements are its chain, seq 1, 2, ...; the newest is
    the record's map leaf. The disclosures are served only to whom a lookup entitles (9.9).
    """

    __tablename__ = "directory_statement"
    record: Mapped[str] = mapped_column(_s(200), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(_s(16))
    nation: Mapped[str] = mapped_column(_s(3), index=True)
    digest: Mapped[str] = mapped_column(_s(43))  # base64url
    signed: Mapped[str] = mapped_column(Text)
    disclosures: Mapped[str] = mapped_column(Text)
    log_index: Mapped[int] = mapped_column(BigInteger)
    map_version: Mapped[int] = mapped_column(BigInteger)


class MapLeaf(Base):
    """The map's leaf history (protocol 9.5): at `version`, `key` took `value`. Append-only."""

    __tablename__ = "map_leaf"
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[bytes] = mapped_column(primary_key=True)
    value: Mapped[bytes]


class WriterEpoch(Base):
    """One row: how many batches may have changed what the writers' caches hold (see
    `service.writer`); bumped inside such a batch's transaction, read by every batch."""

    __tablename__ = "writer_epoch"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger)


class Nonce(Base):
    """Seen (keyid, nonce) pairs of RFC 9421 signatures, kept until the skew window passes."""

    __tablename__ = "request_nonce"
    keyid: Mapped[str] = mapped_column(_s(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(_s(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """One transparency-log entry: `data` is the exact JCS bytes that were hashed."""

    __tablename__ = "audit_entry"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes]
    type: Mapped[str] = mapped_column(_s(32), index=True)
    actor: Mapped[str] = mapped_column(_s(64), index=True)
    time: Mapped[datetime] = mapped_column(index=True)
    subject: Mapped[str | None] = mapped_column(_s(64), index=True)


class AuditOpening(Base):
    """The opening of an entry v2 (protocol 10): its seed (every field's salt) and the values
    it commits to. Beside the log, never in it; deleted when the entry is shredded."""

    __tablename__ = "audit_opening"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seed: Mapped[bytes]
    fields: Mapped[str] = mapped_column(Text)


class TreeHash(Base):
    """Hash of the complete subtree at (level, idx): leaves [idx*2^level, (idx+1)*2^level)."""

    __tablename__ = "tree_hash"
    level: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes]


class Checkpoint(Base):
    __tablename__ = "checkpoint"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes]
    note: Mapped[str] = mapped_column(Text)  # signed note, log key only
    created_at: Mapped[datetime]


class Cosignature(Base):
    __tablename__ = "cosignature"
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(_s(200), primary_key=True)  # witness key name
    line: Mapped[str] = mapped_column(Text)  # the signature line
    created_at: Mapped[datetime]
