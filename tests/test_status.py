"""`styrkedja status --as-of`: the milestone states on a given day are those the deadline watch
publishes for the same day (its `processlage` artifact, read back through a real Prefect API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from smtp_server import SmtpServer, local_smtp
from sqlmodel import select, update
from typer.testing import CliRunner

from config.loader import load_config
from flows.cli import app
from models.db import session_scope
from models.tables import Milestone, PhaseRun, PhaseState
from tasks.cycle import prepare_cycle
from tasks.progress import PROGRESSION_HEADERS, artifact_key

runner = CliRunner()
YEAR = 2028
AS_OF = date(2027, 3, 5)  # planning prerequisites under way: milestones done, overdue, soon and upcoming


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch)


def milestone_rows(output: str) -> list[dict[str, str]]:
    """The rows of the milestone table `status` prints after its phase table (wrapped cells joined)."""
    assert "Milestones on" in output, output
    rows: list[dict[str, str]] = []
    for line in output.split("Milestones on", 1)[1].splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[3]:  # a row's first line: the date never wraps, the phase and milestone names may
            rows.append(dict.fromkeys(PROGRESSION_HEADERS, ""))
        for name, cell in zip(PROGRESSION_HEADERS, cells, strict=True):
            if cell:
                rows[-1][name] = f"{rows[-1][name]} {cell}".strip()
    return rows


def processlage(flow_run_id: Any, key: str) -> list[dict[str, str]]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    assert len(found) == 1, f"no artifact {key} of flow run {flow_run_id}"
    data = found[0].data
    return json.loads(data) if isinstance(data, str) else data


def test_status_as_of_shows_the_states_the_deadline_watch_published_for_that_day(
    prefect_api: None, app_env: Path, smtp: SmtpServer
) -> None:
    from flows.deadline_watch import deadline_watch

    cfg = load_config("region")
    cycle_id = prepare_cycle(cfg, YEAR)
    with session_scope() as s:
        s.add(PhaseRun(cycle_id=cycle_id, phase="preparation", state=PhaseState.COMPLETED))
        s.exec(
            update(Milestone)  # type: ignore[call-overload]
            .where(Milestone.cycle_id == cycle_id, Milestone.key == "investeringsplan")
            .values(done_at=datetime(2027, 1, 28, 9, 0, tzinfo=UTC))
        )
        assert len(list(s.exec(select(Milestone).where(Milestone.cycle_id == cycle_id)))) > 10

    state = deadline_watch(as_of=AS_OF, config="region", return_state=True)
    assert state.is_completed(), state
    published = processlage(state.state_details.flow_run_id, artifact_key("processlage", cfg.organisation.id, YEAR))

    result = runner.invoke(app, ["status", "--year", str(YEAR), "--as-of", AS_OF.isoformat(), "--config", "region"])
    assert result.exit_code == 0, result.output
    assert f"Milestones on {AS_OF}" in result.output
    shown = milestone_rows(result.output)
    assert len(shown) == len(published) > 10
    for printed, artifact in zip(shown, published, strict=True):
        assert printed == artifact
    # A day with every kind of state, so that the comparison says something.
    assert {row["status"] for row in published} == {"klar", "försenad", "snart", "kommande"}


@pytest.mark.parametrize("value", ["2027-02-30", "5 mars", ""])
def test_a_bad_as_of_date_is_one_line_and_exit_2(app_env: Path, value: str) -> None:
    before = sorted(app_env.rglob("*"))
    result = runner.invoke(app, ["status", "--as-of", value, "--config", "region"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: --as-of: expected a date like 2027-03-01, got {value!r}"
    assert sorted(app_env.rglob("*")) == before, "a refused argument writes nothing"
