"""a phase run per follow-up occasion

The follow-up phase runs once per occasion, each run waiting for its own receipts; one row per
(cycle, phase) let a second occasion overwrite the first one's flow run and state. The occasion
becomes part of the key; every existing row (and every phase without occasions) has "".

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The baseline's unique constraint has no name of its own: PostgreSQL calls it
# phaserun_cycle_id_phase_key; SQLite reflects it unnamed, and this convention gives it the same
# name in batch mode (which rebuilds the table on SQLite and alters it in place on PostgreSQL).
NAMING = {"uq": "%(table_name)s_%(column_0_N_name)s_key"}
OLD_UNIQUE = "phaserun_cycle_id_phase_key"
NEW_UNIQUE = "uq_phaserun_cycle_phase_occasion"


def upgrade() -> None:
    with op.batch_alter_table("phaserun", naming_convention=NAMING) as batch_op:
        batch_op.add_column(
            sa.Column("occasion", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False, server_default="")
        )
        batch_op.drop_constraint(OLD_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(NEW_UNIQUE, ["cycle_id", "phase", "occasion"])


def downgrade() -> None:
    # One row per (cycle, phase) again: keep the latest occasion's row, as the old code would have.
    op.execute(
        "DELETE FROM phaserun WHERE id NOT IN "
        "(SELECT keep FROM (SELECT max(id) AS keep FROM phaserun GROUP BY cycle_id, phase) AS latest)"
    )
    with op.batch_alter_table("phaserun", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(NEW_UNIQUE, type_="unique")
        batch_op.drop_column("occasion")
        batch_op.create_unique_constraint(OLD_UNIQUE, ["cycle_id", "phase"])
