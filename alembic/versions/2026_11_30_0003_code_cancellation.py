"""Enrolment codes can be cancelled: when, if ever (issue 11, item 5).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: SQLite adds it in place, and every code issued before stays uncancelled.
    op.add_column("enrolment_code", sa.Column("cancelled_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrolment_code") as batch:
        batch.drop_column("cancelled_at")
