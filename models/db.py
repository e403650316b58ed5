"""Database engine and sessions: SQLite by default (WAL, busy timeout), PostgreSQL by URL."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, create_engine

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """Where the application keeps its database and output (project-local `var/` by default)."""
    return Path(os.environ.get("STYRKEDJA_HOME", PROJECT_ROOT / "var"))


def output_root() -> Path:
    return Path(os.environ.get("STYRKEDJA_OUTPUT", home() / "output"))


def database_url() -> str:
    url = os.environ.get("STYRKEDJA_DATABASE_URL")
    if url:
        return url
    home().mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home() / 'styrkedja.db'}"


def _sqlite_setup(engine: Engine, begin: str = "BEGIN IMMEDIATE") -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control from pysqlite so that BEGIN IMMEDIATE below is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front: a deferred transaction that upgrades to a
        # writer later fails with "database is locked" without waiting for the busy timeout.
        conn.exec_driver_sql(begin)


def get_engine(url: str | None = None) -> Engine:
    """One engine (and pool) per database URL; the URL is resolved on every call, so a changed
    STYRKEDJA_DATABASE_URL takes effect."""
    return _engine(url or database_url())


@lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return engine


@lru_cache(maxsize=16)
def _read_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return _engine(url)
    # Readers of a WAL database do not block each other or the writer: a deferred transaction
    # that never writes takes no lock (the writers' engine begins IMMEDIATE, see above).
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_setup(engine, begin="BEGIN")
    return engine


@contextmanager
def read_session(url: str | None = None) -> Iterator[Session]:
    """A transaction that only reads (pages, lookups): on SQLite it does not take the write lock,
    so many readers (the portal's workers) run at once. Never write in it."""
    # Closing (not rolling back) ends the transaction and keeps what was read loaded.
    with Session(_read_engine(url or database_url()), expire_on_commit=False) as session:
        yield session


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One short transaction: commit on success, roll back on any error.

    Never open one inside another: on SQLite every transaction holds the write lock from its start,
    so the inner one would wait for the outer one until the busy timeout.
    """
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def with_retry(fn: Callable[[Session], T], url: str | None = None, attempts: int = 8) -> T:
    """Run `fn` in its own transaction, again on a lost race or a busy database.

    A concurrent writer can win a unique key (IntegrityError) or hold the lock past the busy
    timeout; `fn` must be written to re-read its state, so running it again is safe.
    """
    for attempt in range(attempts):
        try:
            with session_scope(url) as session:
                return fn(session)
        except (IntegrityError, OperationalError) as exc:
            transient = isinstance(exc, IntegrityError) or _is_transient(exc)
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")


def _is_transient(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("locked", "busy", "deadlock", "could not serialize"))
