"""Enrolment trust: who issued each enrolment code, and its live KEM possession challenge.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("challenge_expires_at", "challenge_device", "challenge_hash", "issued_by")


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, and codes issued before this revision
    # keep NULL (no issuer known: a root code among them counts as the operator's).
    op.add_column("enrolment_code", sa.Column("issued_by", sa.String(length=64), nullable=True))
    op.add_column("enrolment_code", sa.Column("challenge_hash", sa.String(length=64), nullable=True))
    op.add_column("enrolment_code", sa.Column("challenge_device", sa.String(length=32), nullable=True))
    op.add_column("enrolment_code", sa.Column("challenge_expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrolment_code") as batch:
        for column in _COLUMNS:
            batch.drop_column(column)
