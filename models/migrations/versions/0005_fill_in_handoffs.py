"""fill-in handoffs: the receipt's mode, returned files, the spec of built documents

A fill-in handoff (feedback, operational and activity plans, follow-up returns, level reports)
asks its sender for content and is agreed on the returned content; a decision handoff carries a
decided document. Existing receipts get their mode from their topic, as tasks.handoffs decides it
for new ones. Submissions keep the accepted file; level reports keep what a return is read against.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The topics of fill-in handoffs at this revision (tasks.handoffs.HANDOFFS): exact topics, and the
# prefixes of follow-up topics, which name their occasion.
FILL_IN_TOPICS = ("aterkoppling", "verksamhetsplan", "aktivitetsplan")
FILL_IN_PREFIXES = ("uppfoljning-", "nivarapport-")


def upgrade() -> None:
    with op.batch_alter_table("receipt") as batch_op:
        batch_op.add_column(
            sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False, server_default="decision")
        )
    with op.batch_alter_table("submission") as batch_op:
        batch_op.add_column(sa.Column("relpath", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
    with op.batch_alter_table("document") as batch_op:
        batch_op.add_column(sa.Column("spec", sa.JSON(), nullable=True))
    receipt = sa.table("receipt", sa.column("mode", sa.String), sa.column("topic", sa.String))
    fill_in = sa.or_(receipt.c.topic.in_(FILL_IN_TOPICS), *(receipt.c.topic.startswith(p) for p in FILL_IN_PREFIXES))
    op.execute(receipt.update().where(fill_in).values(mode="fill_in"))


def downgrade() -> None:
    # On SQLite a batch operation rebuilds the table, which foreign keys referencing it forbid
    # (document and receipt are referenced); SQLite 3.35+ drops a column in place.
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in (("document", "spec"), ("submission", "relpath"), ("receipt", "mode")):
        if sqlite:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
