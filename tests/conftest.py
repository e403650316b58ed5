"""Shared fixtures: an isolated home per test session, real databases, a real Prefect API."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

# Set before anything imports prefect: no telemetry, a throwaway PREFECT_HOME.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="styrkedja-test-"))
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
os.environ["STYRKEDJA_HOME"] = str(_SESSION_HOME / "app")
os.environ.pop("STYRKEDJA_DATABASE_URL", None)
os.environ.pop("STYRKEDJA_CONFIG", None)

import pytest  # noqa: E402

PG_ADMIN_URL = os.environ.get("STYRKEDJA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_required() -> bool:
    """CI sets STYRKEDJA_REQUIRE_POSTGRES=1 (or CI): an unreachable PostgreSQL is then a failure, not a
    skip, so the suite cannot go green with the PostgreSQL half silently left out. Locally it skips."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("STYRKEDJA_REQUIRE_POSTGRES", "CI")
    )


def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (None: it can)."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means: not here
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def require_postgres() -> None:
    """Skip the test when PostgreSQL is not reachable; fail it instead when it is required (CI)."""
    reason = _postgres_unreachable()
    if reason is None:
        return
    where = PG_ADMIN_URL.split("@", 1)[-1]
    if postgres_required():
        pytest.fail(
            f"PostgreSQL ({where}) is required here (STYRKEDJA_REQUIRE_POSTGRES/CI) but not reachable: {reason}"
        )
    pytest.skip(f"PostgreSQL not reachable ({where}): {reason}")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API (temporary SQLite server); ~14 s to start, so once per session."""
    from prefect.testing.utilities import prefect_test_harness

    # Generous: with several test workers on two cores, servers start while other tests run.
    with prefect_test_harness(server_startup_timeout=180):
        yield


def _new_pg_schema_url() -> tuple[str, str]:
    """A fresh schema per test: cheaper than a database, just as isolated."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", schema


def _drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def pg_schema(*, migrate: bool = True) -> Iterator[str]:
    """The URL of a private PostgreSQL schema (migrated unless `migrate=False`), dropped afterwards;
    any scope: a test's, a module's. Skips, or fails where PostgreSQL is required, when unreachable."""
    from models.db import get_engine
    from models.migrate import upgrade

    require_postgres()
    url, schema = _new_pg_schema_url()
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        _drop_pg_schema(schema)


@lru_cache(maxsize=1)
def _sqlite_template() -> Path:
    from models.db import get_engine
    from models.migrate import upgrade

    path = _SESSION_HOME / "template.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    get_engine(url).dispose()  # closing the last connection checkpoints the WAL into the file
    return path


def _make_db(kind: str, tmp_path: Path) -> Iterator[str]:
    from models.db import get_engine

    if kind == "sqlite":
        # Copy a database migrated once per session: the migration itself is tested elsewhere.
        target = tmp_path / "app.db"
        shutil.copyfile(_sqlite_template(), target)
        url = f"sqlite:///{target}"
        yield url
        get_engine(url).dispose()
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty application database: every data-layer test runs on both backends."""
    yield from _make_db(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield from _make_db("sqlite", tmp_path)


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Path:
    """The whole application pointed at a private home, database and output folder."""
    monkeypatch.setenv("STYRKEDJA_HOME", str(tmp_path))
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("STYRKEDJA_OUTPUT", str(tmp_path / "output"))
    return tmp_path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with slow tests first: with whole files per worker (`--dist loadfile`) a long file
    handed out last keeps one worker busy while the others are idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order within a file is kept
