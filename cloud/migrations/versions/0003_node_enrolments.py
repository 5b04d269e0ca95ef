"""node_enrolments (one-time per-node enrolment tokens)

Revision ID: 0003_node_enrolments
Revises: 0002
Create Date: 2026-12-04 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_node_enrolments"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_enrolments",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_index(op.f("ix_node_enrolments_token_hash"), "node_enrolments", ["token_hash"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_node_enrolments_token_hash"), table_name="node_enrolments")
    op.drop_table("node_enrolments")
