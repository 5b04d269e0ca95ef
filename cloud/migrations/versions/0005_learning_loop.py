"""learning loop: hard-example queue (items + sightings), labelled datasets, training jobs

Revision ID: 0005_learning_loop
Revises: 0004_command_ledger
Create Date: 2026-12-05 07:24:19.437354
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_learning_loop"
down_revision = "0004_command_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hard_example_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("edge_routes", sa.JSON(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("suggested_route", sa.String(length=64), nullable=True),
        sa.Column("suggested_confidence", sa.Float(), nullable=True),
        sa.Column("suggestion_source", sa.String(length=16), nullable=False),
        sa.Column("model_route", sa.String(length=64), nullable=True),
        sa.Column("model_confidence", sa.Float(), nullable=True),
        sa.Column("cloud_route", sa.String(length=64), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("labelled_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hard_example_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hard_example_items_status"), ["status"], unique=False)

    op.create_table(
        "loop_datasets",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
        sa.UniqueConstraint("version"),
    )
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("parent_version", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.Column("dataset_sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("logs", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_jobs_state"), ["state"], unique=False)

    op.create_table(
        "hard_example_sightings",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("edge_route", sa.String(length=64), nullable=False),
        sa.Column("edge_confidence", sa.Float(), nullable=False),
        sa.Column("final_route", sa.String(length=64), nullable=False),
        sa.Column("answer_source", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["hard_example_items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hard_example_sightings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hard_example_sightings_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_hard_example_sightings_node_id"), ["node_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hard_example_sightings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hard_example_sightings_node_id"))
        batch_op.drop_index(batch_op.f("ix_hard_example_sightings_item_id"))

    op.drop_table("hard_example_sightings")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_jobs_state"))

    op.drop_table("training_jobs")
    op.drop_table("loop_datasets")
    with op.batch_alter_table("hard_example_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hard_example_items_status"))

    op.drop_table("hard_example_items")
