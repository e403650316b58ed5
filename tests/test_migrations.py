"""Schema changes go through Alembic; the database the program creates is the one the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables)
from models.db import get_engine
from models.migrate import HEAD, alembic_config, current_revision, upgrade


def test_head_constant_matches_alembic():
    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == HEAD


def test_migrated_schema_matches_the_models(db_url):
    assert current_revision(db_url) == HEAD
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    upgrade(db_url)  # a second upgrade is a no-op
    assert current_revision(db_url) == HEAD
