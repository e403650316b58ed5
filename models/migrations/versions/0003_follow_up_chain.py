"""raised items and conclusions of the follow-up chain

Items a level raises to the next one stay open until some level acts on them; the annual report's
conclusions are kept for the next cycle's planning material.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raisedissue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("occasion_key", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("origin_unit", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("acted_by_unit", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("acted_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("action", sa.Text(), nullable=True),
        sa.Column("acted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_raisedissue_cycle_state", "raisedissue", ["cycle_id", "state"], unique=False)
    op.create_table(
        "conclusion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("occasion_key", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycle.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cycle_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("conclusion")
    op.drop_index("ix_raisedissue_cycle_state", table_name="raisedissue")
    op.drop_table("raisedissue")
