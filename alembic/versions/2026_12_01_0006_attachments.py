"""Attachments (issue 15, protocol 11): uploads and their ciphertext's whereabouts, and each
device's first download.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per attachment, from its upload's start. The ciphertext is in the blob store
    # (service/storage/blobs.py) under the attachment's id; this row says whose it is, for
    # which message, how big, its chunk tree root once complete, and where it stands.
    op.create_table(
        "attachment",
        sa.Column("id", sa.String(28), primary_key=True),
        sa.Column("message_id", sa.String(36), nullable=False, index=True),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("device.id"), nullable=False),
        sa.Column("principal_id", sa.String(64), sa.ForeignKey("principal.id"), nullable=False, index=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("part_size", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("root", sa.String(43), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "attachment_fetch",
        sa.Column("attachment_id", sa.String(28), sa.ForeignKey("attachment.id"), primary_key=True),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("device.id"), primary_key=True),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attachment_fetch")
    op.drop_table("attachment")
