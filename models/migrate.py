"""Schema changes go through Alembic migrations; this is how the program applies them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.db import database_url, get_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision; a test checks it against Alembic's own head. Knowing it lets every command
# skip Alembic (a second of imports and file scanning) when the database is already current.
HEAD = "0006"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return cfg


def current_revision(url: str | None = None) -> str | None:
    try:
        with get_engine(url).connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent: an up-to-date database is left alone)."""
    if revision == "head" and current_revision(url) == HEAD:
        return
    from alembic import command

    engine = get_engine(url or database_url())
    cfg = alembic_config(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
