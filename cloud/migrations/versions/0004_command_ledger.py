"""command ledger: the node's ack on each command row; status indexed (the hub resends unacked ones)

The MQTT sync hub keeps no command table of its own any more: its commands (and their acks) are
moved into this table when a hub opens its old SQLite file (``CloudSync`` with the fleet's ledger).

Revision ID: 0004_command_ledger
Revises: 0003_node_enrolments
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_command_ledger"
down_revision = "0003_node_enrolments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_commands_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commands_status"))
        batch_op.drop_column("ack")
