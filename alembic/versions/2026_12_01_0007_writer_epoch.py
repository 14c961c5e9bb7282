"""The writers' epoch (issue 17): how many batches, by any process, may have changed what the
writers' caches hold (principals, devices, channels, members).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row. A batch with a job that may change who may receive what adds one to `epoch`
    # (inside its transaction); every process's writer keeps its cache while the epoch is the
    # one it last saw, however many other batches (messages, fetches) were appended meanwhile.
    table = op.create_table(
        "writer_epoch",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0}])


def downgrade() -> None:
    op.drop_table("writer_epoch")
