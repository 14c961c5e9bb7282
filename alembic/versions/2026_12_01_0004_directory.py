"""The verifiable directory (issue 13): signed statements, the map's leaf history, invitations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Tables that only ever grow: UPDATE and DELETE are refused in the database, as for the log.
APPEND_ONLY = ("directory_statement", "map_leaf")


def upgrade() -> None:
    op.create_table(
        "directory_statement",
        sa.Column("record", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("nation", sa.String(3), nullable=False, index=True),
        sa.Column("digest", sa.String(43), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),  # JCS JSON of the signed statement
        # JSON {name: disclosure}: what opens its commitments; never in the log.
        sa.Column("disclosures", sa.Text(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("map_version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "map_leaf",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("key", sa.LargeBinary(), primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
    )
    with op.batch_alter_table("enrolment_code") as batch:
        # The invitation key (protocol 9.8) found the code's row: the code itself never reaches
        # the server. NULL for codes issued before (they enrol as before, with no directory leaf).
        batch.add_column(sa.Column("invitation_key", sa.String(43), nullable=True))
        batch.add_column(sa.Column("invitation", sa.Text(), nullable=True))  # signed statement
        batch.add_column(sa.Column("anchors_digest", sa.String(43), nullable=True))
        batch.add_column(sa.Column("anchors", sa.Text(), nullable=True))
        batch.create_index("ix_enrolment_code_invitation_key", ["invitation_key"], unique=True)
        batch.create_index("ix_enrolment_code_anchors_digest", ["anchors_digest"])
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION liaison_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION liaison_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                    f"SELECT RAISE(ABORT, 'liaison: {verb} on {table} refused: the directory is "
                    "append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    with op.batch_alter_table("enrolment_code") as batch:
        batch.drop_index("ix_enrolment_code_anchors_digest")
        batch.drop_index("ix_enrolment_code_invitation_key")
        for column in ("anchors", "anchors_digest", "invitation", "invitation_key"):
            batch.drop_column(column)
    op.drop_table("map_leaf")
    op.drop_table("directory_statement")
