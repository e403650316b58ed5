"""indexes for the deadline watch, status and the per-unit and per-receipt lookups

The daily deadline watch asks for the milestones of a cycle due by a date; `status` and the audit
history read a cycle's entries per phase; a receipt's messages and a unit's returned documents are
looked up by their foreign key. Without these, each is a full table scan that grows with every
cycle kept in the database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (index, table, columns): the names match models/tables.py, so autogenerate finds no difference.
INDEXES = [
    ("ix_milestone_cycle_due", "milestone", ["cycle_id", "due"]),
    ("ix_notification_receipt_id", "notification", ["receipt_id"]),
    ("ix_submission_unit_id", "submission", ["unit_id"]),
    ("ix_auditentry_cycle_phase", "auditentry", ["cycle_id", "phase"]),
]


def upgrade() -> None:
    # Plain CREATE INDEX on both backends: no table rebuild (SQLite batch mode) is needed.
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
