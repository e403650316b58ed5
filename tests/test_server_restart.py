"""The Prefect server restarts while a phase is suspended: a real `prefect server start` of our own
(SQLite under its own PREFECT_HOME), a process serving the deployments, a phase run suspended on its
receipts. The server is stopped and started again on the same port and database; the serving
process rides the outage out (the Prefect client retries a lost connection), and signing the last
receipt resumes the run, which completes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect_server import (
    PrefectServer,
    children,
    deployed,
    healthy,
    own_prefect_api,
    run_state,
    start_serving,
    stop,
    wait_for,
)
from sqlmodel import select

from config.loader import load_config
from flows.registry import PHASE_FLOWS, deployment_name
from models.db import session_scope
from models.tables import PhaseRun, Receipt, ReceiptState
from tasks.receipts import SignRequest, code_for, gate_missing, sign
from tasks.waiting import resume_if_ready

YEAR = 2033
PHASE = "planning_prerequisites"
pytestmark = pytest.mark.slow


def _receipts(phase: str) -> list[Receipt]:
    with session_scope() as s:
        return list(s.exec(select(Receipt).where(Receipt.phase == phase).order_by(Receipt.id)))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrefectServer]:
    with own_prefect_api(tmp_path) as srv:
        yield srv


def test_suspended_phase_resumes_after_a_server_restart(server: PrefectServer, app_env: Path) -> None:
    cfg = load_config("region")
    env = {**os.environ, "PREFECT_API_URL": server.api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("STYRKEDJA_FAULT", None)
    log = app_env / "serve.log"
    # The previous phase, in process against our server, signed: the gate is open.
    PHASE_FLOWS["preparation"](year=YEAR, config="region", wait=False)
    for r in _receipts("preparation"):
        sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))

    serving = start_serving(env, log)
    try:
        wait_for(deployed, 90, "deployments to register", log)
        fr = run_deployment(
            deployment_name(PHASE_FLOWS[PHASE]), parameters={"year": YEAR, "config": "region"}, timeout=0
        )
        wait_for(lambda: run_state(fr.id) == StateType.PAUSED, 90, "the phase to suspend", log, fr.id)
        wait_for(lambda: not children(serving.pid), 30, "the suspended run's process to exit", log, fr.id)
        rows = _receipts(PHASE)
        assert len(rows) == len(cfg.committees()) and all(r.state == ReceiptState.ISSUED for r in rows)

        # The server goes away while the phase is suspended, and comes back on the same port and database.
        # SIGTERM ends it within the grace period (exit 0, or killed by that signal), no SIGKILL needed.
        assert server.stop() in (0, -signal.SIGTERM), "the Prefect server did not stop on SIGTERM"
        assert not healthy(server.api)
        time.sleep(3)  # long enough for the serving process's polls to fail
        server.start(timeout=90)
        assert run_state(fr.id) == StateType.PAUSED, "the suspension was not kept across the restart"
        # The serving process rode the outage out: the operator need not restart it.
        assert serving.poll() is None, f"the serving process exited ({serving.returncode}) during the restart"

        resumed = False
        for r in rows:
            assert not resumed, "a signature before the last one resumed the run"
            sign(cfg, SignRequest(r.id, cfg.unit(r.receiver_unit).signatories[0].id, code_for(r.key)))
            resumed = resume_if_ready(r.cycle_id, PHASE, "test", wait_s=0)
        assert resumed, f"the last signature did not resume the run (state {run_state(fr.id)})"
        wait_for(lambda: run_state(fr.id) == StateType.COMPLETED, 90, "the resumed phase to complete", log, fr.id)
        assert serving.poll() is None, "the serving process did not survive"
    finally:
        stop(serving)

    assert {r.state for r in _receipts(PHASE)} == {ReceiptState.AGREED}
    assert len(_receipts(PHASE)) == len(cfg.committees())
    with session_scope() as s:
        run = s.exec(select(PhaseRun).where(PhaseRun.phase == PHASE)).one()
        assert run.state == "completed" and not run.overridden and run.flow_run_id == str(fr.id)
        assert gate_missing(s, run.cycle_id, "committee_feedback") == []
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment_name(PHASE_FLOWS[PHASE]))
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
    assert [r.id for r in runs] == [fr.id], "the restart or the resume started a second run"
