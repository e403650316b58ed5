"""Schema changes go through Alembic migrations; this is how the program applies them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from models.db import database_url, get_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent: an up-to-date database is left alone)."""
    engine = get_engine(url or database_url())
    cfg = alembic_config(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
