"""hard examples from user feedback: why each sighting was queued and the route a user named

A sighting now carries its ``reason`` (``contracts.loop.HardExampleReason``) and, for a rejected
answer, the ``user_route`` the user gave (``POST /v1/feedback`` on the edge); a queue item counts
both (``reasons``, ``user_routes``) and prefers a user's route as its suggested label.

Revision ID: 0006_feedback_hard_examples
Revises: 0005_learning_loop
Create Date: 2026-12-05 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_feedback_hard_examples"
down_revision = "0005_learning_loop"
branch_labels = None
depends_on = None


EMPTY = sa.text("'{}'")


def upgrade() -> None:
    with op.batch_alter_table("hard_example_sightings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=32), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("user_route", sa.String(length=64), nullable=False, server_default=""))
    with op.batch_alter_table("hard_example_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_routes", sa.JSON(), nullable=False, server_default=EMPTY))
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=False, server_default=EMPTY))


def downgrade() -> None:
    with op.batch_alter_table("hard_example_items", schema=None) as batch_op:
        batch_op.drop_column("reasons")
        batch_op.drop_column("user_routes")
    with op.batch_alter_table("hard_example_sightings", schema=None) as batch_op:
        batch_op.drop_column("user_route")
        batch_op.drop_column("reason")
