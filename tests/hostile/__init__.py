"""The hostile input corpus: cases that must each end in one clear line, exit code 2, no traceback,
no file written and the database unchanged. One module per category; test_hostile_input.py runs
them through the real command line. Big inputs are generated at test time, never committed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import inspect, text

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Case:
    """One hostile input: `make(folder)` writes what it needs into `folder` and returns the
    command-line arguments; the error line must contain every fragment."""

    id: str
    make: Callable[[Path], list[str]]
    fragments: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # A refused signing is itself recorded: exactly one audit row ("refused_…"), nothing else.
    audited: bool = False


def db_dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, ordered: equal dumps mean an unchanged database."""
    from models.db import get_engine

    engine = get_engine(url)
    names = sorted(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(text(f'SELECT * FROM "{name}" ORDER BY 1'))] for name in names
        }


def tree(folder: Path) -> dict[str, str]:
    """Files under a folder with a digest of each (SQLite's -wal/-shm companions left out)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal"))
    }


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command line in its own process, as a user starts it."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("STYRKEDJA_")} | env
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        cwd=ROOT,
    )


def run_cli_in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The same command line, called in this process: what `styrkedja` runs after the interpreter
    started, without paying ~1 s of interpreter start and imports per case. An exception that
    escapes is rendered as the traceback a user would see, so the corpus' checks catch it."""
    import contextlib
    import io
    import traceback

    from flows.cli import _main_one_line_usage_errors

    saved = {k: os.environ.get(k) for k in {*env, *(k for k in os.environ if k.startswith("STYRKEDJA_"))}}
    out, err = io.StringIO(), io.StringIO()
    try:
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = _main_one_line_usage_errors(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # what would reach the user as a traceback
                err.write(traceback.format_exc())
                code = 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
