"""Database tables (SQLModel over SQLAlchemy). The Alembic migrations create exactly these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

__all__ = [
    "AuditEntry",
    "Channel",
    "ChannelMember",
    "Checkpoint",
    "Cosignature",
    "Delivery",
    "Device",
    "EnrolmentCode",
    "Message",
    "Nonce",
    "Principal",
    "TreeHash",
]


def _dt(*, nullable: bool = False, index: bool = False) -> Any:
    """A naive-UTC timestamp column (SQLModel's own datetime type insists on time zones)."""
    return Field(default=None if nullable else ..., sa_column=Column(DateTime, nullable=nullable,
                                                                     index=index))


class Principal(SQLModel, table=True):
    __tablename__ = "principal"
    id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    nation: str = Field(max_length=3, index=True)
    kind: str = Field(max_length=16)  # person | system
    roles: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    clearance: str = Field(max_length=32)
    compartments: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    status: str = Field(max_length=16)  # active | suspended
    created_at: datetime = _dt()
    updated_at: datetime = _dt()


class Device(SQLModel, table=True):
    __tablename__ = "device"
    id: str = Field(primary_key=True, max_length=32)
    principal_id: str = Field(foreign_key="principal.id", index=True, max_length=64)
    signed_bundle: str = Field(sa_column=Column(Text, nullable=False))  # JCS JSON as enrolled
    suite: str = Field(max_length=32)
    enrolled_at: datetime = _dt()
    last_seen_at: datetime | None = _dt(nullable=True)
    revoked_at: datetime | None = _dt(nullable=True)
    enrol_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    revoke_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class EnrolmentCode(SQLModel, table=True):
    __tablename__ = "enrolment_code"
    code_hash: str = Field(primary_key=True, max_length=64)  # SHA-256 hex; the code is never stored
    principal_id: str = Field(foreign_key="principal.id", index=True, max_length=64)
    created_at: datetime = _dt()
    expires_at: datetime = _dt()
    used_at: datetime | None = _dt(nullable=True)


class Channel(SQLModel, table=True):
    __tablename__ = "channel"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    ceiling: str = Field(sa_column=Column(Text, nullable=False))  # label JSON
    created_at: datetime = _dt()


class ChannelMember(SQLModel, table=True):
    __tablename__ = "channel_member"
    channel_id: str = Field(foreign_key="channel.id", primary_key=True, max_length=64)
    principal_id: str = Field(foreign_key="principal.id", primary_key=True, max_length=64,
                              index=True)


class Message(SQLModel, table=True):
    __tablename__ = "message"
    id: str = Field(primary_key=True, max_length=36)
    channel_id: str = Field(foreign_key="channel.id", index=True, max_length=64)
    sender_device: str = Field(max_length=32)
    sender_principal: str = Field(max_length=64)
    label: str = Field(sa_column=Column(Text, nullable=False))  # label JSON (canonical)
    classification: str = Field(max_length=32)
    envelope: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    digest: str = Field(max_length=64)
    size: int
    created: datetime = _dt()
    accepted_at: datetime = _dt()
    expires_at: datetime = _dt(index=True)
    expired_at: datetime | None = _dt(nullable=True)
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False))


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_device_seq", "device_id", "seq"),
                      Index("ix_delivery_message_device", "message_id", "device_id", unique=True))
    seq: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(foreign_key="message.id", max_length=36)
    device_id: str = Field(foreign_key="device.id", max_length=32)
    fetched_at: datetime | None = _dt(nullable=True)
    acked_at: datetime | None = _dt(nullable=True)


class Nonce(SQLModel, table=True):
    """Seen (keyid, nonce) pairs of RFC 9421 signatures, kept until the skew window passes."""

    __tablename__ = "request_nonce"
    keyid: str = Field(primary_key=True, max_length=32)
    nonce: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = _dt(index=True)


class AuditEntry(SQLModel, table=True):
    """One transparency-log entry: `data` is the exact JCS bytes that were hashed."""

    __tablename__ = "audit_entry"
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    type: str = Field(max_length=32, index=True)
    actor: str = Field(max_length=64, index=True)
    time: datetime = _dt(index=True)
    subject: str | None = Field(default=None, max_length=64, index=True)


class TreeHash(SQLModel, table=True):
    """Hash of the complete subtree at (level, idx): leaves [idx*2^level, (idx+1)*2^level)."""

    __tablename__ = "tree_hash"
    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Checkpoint(SQLModel, table=True):
    __tablename__ = "checkpoint"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))  # signed note, log key only
    created_at: datetime = _dt()


class Cosignature(SQLModel, table=True):
    __tablename__ = "cosignature"
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(primary_key=True, max_length=200)  # witness key name
    line: str = Field(sa_column=Column(Text, nullable=False))  # the signature line
    created_at: datetime = _dt()
