"""Audit entries v2 (issue 14, protocol 10): each entry's opening, beside the append-only log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not append-only: shredding a message's entries deletes their rows (their commitments
    # stay in the log, unopenable). Never in the log itself.
    op.create_table(
        "audit_opening",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("seed", sa.LargeBinary(), nullable=False),  # 32 bytes: every salt of the entry
        sa.Column("fields", sa.Text(), nullable=False),  # JCS JSON {name: value} of what is committed
    )


def downgrade() -> None:
    op.drop_table("audit_opening")
