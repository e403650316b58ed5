"""The hostile input corpus (tests/hostile/) through the real command line.

Configuration and argument cases run `python -m flows.cli` in a process of its own (three at a
time, each with its own copy of one seeded database); organisation templates (`styrkedja run`)
and returned documents (`styrkedja submit`) go through the same command line in this process
(Typer's runner) against the seeded database itself. Every case: exit code 2, one line naming
the file/field/value, no traceback, no file written, every row of every table unchanged.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import _sqlite_template
from hostile import (
    Case,
    argument_cases,
    config_cases,
    db_dump,
    document_cases,
    run_cli,
    run_cli_in_process,
    template_cases,
    tree,
)
from sqlmodel import select
from typer.testing import CliRunner

from config.loader import load_config
from models.db import get_engine, session_scope
from models.tables import Document
from tasks.cycle import prepare_cycle
from tasks.distribution import distribute
from tasks.handoffs import handoffs_for_phase

YEAR = document_cases.YEAR
pytestmark = pytest.mark.slow  # ~60 command-line processes
PROCESS_CASES: list[Case] = config_cases.CASES + argument_cases.CASES
REAL_PROCESS = {c.id for c in PROCESS_CASES[::6]}


@dataclass(frozen=True)
class Seeded:
    home: Path
    db: Path  # a SQLite file with plan year 2028: committee feedback, activity plans, operational plans sent
    out: Path
    dump: dict[str, list[tuple]]
    sent: document_cases.Sent


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    home = tmp_path_factory.mktemp("seeded")
    db = home / "app.db"
    shutil.copyfile(_sqlite_template(), db)
    url = f"sqlite:///{db}"
    out = home / "output"
    cfg = load_config("region")
    cycle_id = prepare_cycle(cfg, YEAR, url)
    for phase, pick in (
        ("committee_feedback", lambda h: h.sender in ("HSN", "RUN")),
        ("activity_plans", lambda h: h.sender == "RLK"),
        ("operational_plans", lambda h: h.sender == "HSN"),
    ):
        chosen = [h for h in handoffs_for_phase(cfg, YEAR, phase, None) if pick(h)]
        distribute(cfg, cycle_id, phase, chosen, out, actor="test", url=url)
    with session_scope(url) as s:
        docs = {(d.kind, d.unit_id): d for d in s.exec(select(Document))}
    get_engine(url).dispose()  # the WAL goes into the file: copies of it are complete
    sent = document_cases.Sent(
        cfg=cfg,
        out=out,
        feedback=out / docs["aterkoppling", "HSN"].relpath,
        feedback_key=docs["aterkoppling", "HSN"].key,
        other_feedback_key=docs["aterkoppling", "RUN"].key,
        plan=out / docs["aktivitetsplan", "RLK"].relpath,
        plan_key=docs["aktivitetsplan", "RLK"].key,
        operational=out / docs["verksamhetsplan", "HSN"].relpath,
    )
    return Seeded(home, db, out, db_dump(url), sent)


@dataclass(frozen=True)
class Outcome:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    dump: dict[str, list[tuple]]
    written: dict[str, str]  # files that appeared in the case's home and output folders
    seconds: float


def _run_case(case: Case, seeded: Seeded, folder: Path) -> Outcome:
    folder.mkdir()
    inputs = folder / "inputs"
    inputs.mkdir()
    args = case.make(inputs)
    db = folder / "app.db"
    shutil.copyfile(seeded.db, db)
    env = {
        "STYRKEDJA_HOME": str(folder / "home"),
        "STYRKEDJA_OUTPUT": str(folder / "output"),
        "STYRKEDJA_DATABASE_URL": f"sqlite:///{db}",
        "STYRKEDJA_SECRET_KEY": "hostile-corpus",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # nothing may reach for Prefect
        **case.env,
    }
    before_inputs = tree(inputs)
    started = time.monotonic()
    # Every sixth case (every category) through a real interpreter, the rest in process: the same
    # code path after start-up, at a fraction of the cost.
    proc = run_cli(args, env) if case.id in REAL_PROCESS else run_cli_in_process(args, env)
    seconds = time.monotonic() - started
    url = f"sqlite:///{db}"
    dump = db_dump(url)
    get_engine(url).dispose()
    # home/cache holds the program's own caches (a validated configuration, days off), never data.
    written = {k: v for k, v in tree(folder / "home").items() if not k.startswith("cache/")}
    written |= tree(folder / "output")
    written |= {f"inputs/{k}": v for k, v in tree(inputs).items() if before_inputs.get(k) != v}
    return Outcome(args, proc.returncode, proc.stdout, proc.stderr, dump, written, seconds)


@pytest.fixture(scope="module")
def outcomes(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every command-line case: the real processes two at a time in the background, meanwhile the
    in-process ones one after the other (they set the environment and redirect output)."""
    base = tmp_path_factory.mktemp("cases")
    folders = {c.id: base / f"c{i:03d}" for i, c in enumerate(PROCESS_CASES)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            c.id: pool.submit(_run_case, c, seeded, folders[c.id]) for c in PROCESS_CASES if c.id in REAL_PROCESS
        }
        done = {c.id: _run_case(c, seeded, folders[c.id]) for c in PROCESS_CASES if c.id not in REAL_PROCESS}
        return done | {case_id: f.result() for case_id, f in futures.items()}


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text[-3000:]}"
    return lines[0]


@pytest.mark.parametrize("case", PROCESS_CASES, ids=lambda c: c.id)
def test_hostile_command_line_input(case: Case, outcomes: dict[str, Outcome], seeded: Seeded) -> None:
    got = outcomes[case.id]
    shown = f"{got.args}\nstdout: {got.stdout[-2000:]}\nstderr: {got.stderr[-3000:]}"
    assert "Traceback" not in got.stdout + got.stderr, shown
    assert got.returncode == 2, shown
    line = _one_line(got.stderr)
    assert line.startswith("error: "), shown
    assert got.stdout.strip() == "", shown
    for fragment in case.fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    if case.id.startswith("config: ") and not case.id.endswith("a folder"):
        assert Path(got.args[-1]).name in line, f"the file is not named: {line!r}"
    assert got.written == {}, f"files were written: {sorted(got.written)}"
    if case.audited:
        added = got.dump["auditentry"][len(seeded.dump["auditentry"]) :]
        assert len(added) == 1 and "refused_" in str(added[0]), added
        assert {**got.dump, "auditentry": seeded.dump["auditentry"]} == seeded.dump, "the database changed"
        assert got.dump["auditentry"][: len(seeded.dump["auditentry"])] == seeded.dump["auditentry"]
    else:
        assert got.dump == seeded.dump, "the database changed"


# -- returned documents ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def submit_env(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("submit-home")
    return {
        "STYRKEDJA_HOME": str(home),
        "STYRKEDJA_OUTPUT": str(seeded.out),
        "STYRKEDJA_DATABASE_URL": f"sqlite:///{seeded.db}",
        "STYRKEDJA_SECRET_KEY": "hostile-corpus",
    }


@pytest.mark.parametrize(
    ("case_id", "make", "fragments"), document_cases.CASES, ids=[c[0] for c in document_cases.CASES]
)
def test_hostile_returned_document(
    case_id: str, make: Any, fragments: tuple[str, ...], seeded: Seeded, submit_env: dict[str, str], tmp_path: Path
) -> None:
    from flows.cli import app

    path = make(seeded.sent, tmp_path)
    inputs_before = tree(tmp_path)
    output_before = tree(seeded.out)
    url = submit_env["STYRKEDJA_DATABASE_URL"]
    result = CliRunner().invoke(app, ["submit", str(path), "--config", "region", "--actor", "t"], env=submit_env)
    shown = f"{case_id}: exit {result.exit_code}\n{result.output[-3000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
    assert "Traceback" not in result.output, shown
    assert result.exit_code == 2, shown
    line = _one_line(result.stderr)
    assert result.stdout.strip() == "", shown
    assert line.startswith(f"error: {path.name}:"), shown
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert len(line) < 600, f"not a readable line: {len(line)} characters"
    assert tree(tmp_path) == inputs_before and tree(seeded.out) == output_before, "a file was written"
    assert tree(Path(submit_env["STYRKEDJA_HOME"])) == {}
    assert db_dump(url) == seeded.dump, "the database changed"


@pytest.mark.parametrize("case", template_cases.CASES, ids=lambda c: c.id)
def test_hostile_organisation_template(
    case: Case, seeded: Seeded, submit_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import app

    args = case.make(tmp_path)
    env = submit_env | {"STYRKEDJA_TEMPLATE_DIR": str(tmp_path / "mallar"), "STYRKEDJA_OUTPUT": str(tmp_path / "out")}
    inputs_before = tree(tmp_path)
    result = CliRunner().invoke(app, args, env=env)
    shown = f"{case.id}: exit {result.exit_code}\n{result.output[-3000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
    assert "Traceback" not in result.output and result.exit_code == 2, shown
    line = _one_line(result.stderr)
    assert line.startswith("error: template") or line.startswith("error: templates in"), shown
    for fragment in case.fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert tree(tmp_path) == inputs_before and tree(Path(submit_env["STYRKEDJA_HOME"])) == {}, "a file was written"
    assert db_dump(submit_env["STYRKEDJA_DATABASE_URL"]) == seeded.dump, "the database changed"


def test_the_corpus_is_big_enough() -> None:
    counts = {
        "configuration": len(config_cases.CASES),
        "arguments": len(argument_cases.CASES),
        "templates": len(template_cases.CASES),
        "documents": len(document_cases.CASES),
    }
    assert sum(counts.values()) >= 60 and min(counts.values()) >= 8, counts
    ids = [c.id for c in PROCESS_CASES] + [c[0] for c in document_cases.CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
